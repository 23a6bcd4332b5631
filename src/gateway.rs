//! The gateway assembled: backends, model store, runtime, apps and the HTTP edge, built from
//! one [`GatewayConfig`] and served until Ctrl-C or SIGTERM.

use crate::apps::{AppManifest, Apps};
use crate::fleet::{Fleet, FleetConfig};
use crate::http::admin::{Admin, UploadLimits};
use crate::http::{self, HttpLimits};
use crate::metrics::Metrics;
use crate::nn::backend::ort::{OrtBackend, OrtOptions};
use crate::nn::backend::tract::TractBackend;
use crate::nn::backend::{BackendKind, Backends};
use crate::nn::load_limit::LoadLimit;
use crate::nn::manifest::ModelManifest;
use crate::nn::{ModelStore, describe};
use crate::persist::VersionStore;
use crate::repository::ModelRepository;
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything `edgenn serve` (and `edgenn run`) is configured with, by part.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub models: ModelsConfig,
    pub apps: AppsConfig,
    pub runtime: RuntimeConfig,
    pub http: HttpLimits,
    /// The demo page's directory, served at `/` and `/demo/`.
    pub web_demo: Option<PathBuf>,
    /// The admin API and the deployed apps it keeps; `None` disables both.
    pub admin: Option<AdminConfig>,
    /// A desired state to follow (apps and models by OCI reference).
    pub fleet: Option<FleetConfig>,
}

#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// Directories each holding model directories (`<dir>/<name>/model.toml`).
    pub roots: Vec<PathBuf>,
    /// Single ONNX files served as shared models: `(name, path, backend)`.
    pub files: Vec<(String, PathBuf, BackendKind)>,
    /// `libonnxruntime.so`; without it only tract serves.
    pub ort_library: Option<PathBuf>,
    pub ort: OrtOptions,
    pub cache_bytes: u64,
    /// Load every declared model on every backend at start, in the background.
    pub warm_up: bool,
    /// This gateway's own binary, to load every model in a child process under
    /// `max_load_bytes` before it enters the gateway (`nn::load_limit`); `None`: in process.
    pub loader: Option<PathBuf>,
    /// The most one model may take in memory while it loads.
    pub max_load_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct AppsConfig {
    /// App directories (each with an `edgenn.toml`).
    pub dirs: Vec<PathBuf>,
    /// Apps given as a manifest made on the command line, with the directory its paths are
    /// relative to.
    pub manifests: Vec<(AppManifest, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where deployed apps and models added over HTTP are kept, so they come back after a
    /// restart.
    pub data_dir: PathBuf,
    /// Bearer token of the admin API; without one the admin API answers 401.
    pub token: Option<String>,
    pub upload: UploadLimits,
}

/// The gateway's parts, built and wired, not yet listening.
pub struct Gateway {
    pub apps: Arc<Apps>,
    pub repository: Arc<ModelRepository>,
    pub fleet: Option<Arc<Fleet>>,
    web_demo: Option<PathBuf>,
    admin: Option<Arc<Admin>>,
    http: HttpLimits,
}

/// The backends of this process: tract always, ONNX Runtime when its library loads. A new
/// backend is registered here, one line.
fn backends(models: &ModelsConfig) -> Backends {
    let mut backends = Backends::default();
    backends.register(TractBackend);
    let ort = match &models.ort_library {
        Some(path) => OrtBackend::new(path, models.ort).map_err(|e| describe(&e)),
        None => Err("no ONNX Runtime library configured (--ort-library or EDGENN_ORT_LIBRARY)".to_string()),
    };
    match ort {
        Ok(ort) => {
            backends.register(ort);
        }
        Err(why) => {
            tracing::warn!(%why, "ONNX Runtime backend disabled; tract still serves");
            backends.register_unavailable(BackendKind::Ort, why);
        }
    }
    backends
}

impl Gateway {
    pub fn build(config: &GatewayConfig) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let mut store = ModelStore::new(backends(&config.models), config.models.cache_bytes, metrics.clone());
        if let Some(exe) = &config.models.loader {
            store = store.with_load_limit(LoadLimit {
                exe: exe.clone(),
                max_bytes: config.models.max_load_bytes,
                ort_library: config.models.ort_library.clone(),
                ort: config.models.ort,
            });
        }
        let models = Arc::new(store);
        let open = |kind: &str, data: &PathBuf| {
            VersionStore::open(data, kind).with_context(|| format!("opening {}", data.join(kind).display()))
        };
        let stored_models = config.admin.as_ref().map(|admin| open("models", &admin.data_dir)).transpose()?;
        let repository = Arc::new(ModelRepository::new(models.clone(), stored_models));
        for root in &config.models.roots {
            let names = repository.add_root(root).with_context(|| format!("loading models from {}", root.display()))?;
            tracing::info!(root = %root.display(), models = ?names, "models registered");
        }
        for (name, path, backend) in &config.models.files {
            let manifest = ModelManifest {
                name: name.clone(),
                file: path.clone(),
                backend: *backend,
                description: Some(format!("from {}", path.display())),
                inputs: Vec::new(),
                outputs: Vec::new(),
            };
            repository.add_file(manifest, path.clone()).with_context(|| format!("model {name}"))?;
        }
        // Models added over HTTP before the apps, which may declare them.
        let restored = repository.restore()?;
        if !restored.is_empty() {
            tracing::info!(models = ?restored, "restored models added over HTTP");
        }
        let runtime = Runtime::new(config.runtime.clone(), models, metrics)
            .map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e:#}"))?;
        let apps = Arc::new(Apps::new(Arc::new(runtime)));
        for dir in &config.apps.dirs {
            apps.deploy_dir(dir)
                .map_err(|e| anyhow::anyhow!("deploying the app in {}: {}", dir.display(), describe(&e)))?;
        }
        for (manifest, dir) in &config.apps.manifests {
            let name = manifest.name.clone();
            apps.deploy_manifest(manifest.clone(), dir)
                .map_err(|e| anyhow::anyhow!("deploying app {name}: {}", describe(&e)))?;
        }
        let admin = match &config.admin {
            Some(admin) => {
                let store = open("apps", &admin.data_dir)?;
                // Apps deployed over HTTP come back, even one whose declared model has been
                // removed since (its guest gets wasi-nn's `not-found`); one that no longer
                // validates is logged, not fatal, so the others still serve.
                for (name, version) in store.current_versions()? {
                    match apps.restore_stored(&version, &name) {
                        Ok(app) => tracing::info!(app = %app.manifest.name, "restored deployed app"),
                        Err(error) => {
                            tracing::error!(dir = %version.display(), error = %describe(&error), "cannot restore app")
                        }
                    }
                }
                Some(Arc::new(Admin::new(admin.token.clone(), store, admin.upload)))
            }
            None => None,
        };
        if !config.models.warm_up {
            apps.skip_warm_up();
        }
        let fleet = config.fleet.clone().map(|fleet| Arc::new(Fleet::new(fleet, apps.clone(), repository.clone())));
        Ok(Self { apps, repository, fleet, web_demo: config.web_demo.clone(), admin, http: config.http.clone() })
    }

    pub fn router(&self) -> axum::Router {
        http::router(
            self.apps.clone(),
            self.repository.clone(),
            self.fleet.clone(),
            self.web_demo.clone(),
            self.admin.clone(),
            self.http.clone(),
        )
    }
}

/// Builds the gateway and serves until Ctrl-C or SIGTERM.
pub async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    let gateway = Gateway::build(&config)?;
    if let Some(fleet) = &gateway.fleet {
        tokio::spawn(fleet.clone().run());
    }
    if config.models.warm_up {
        let apps = gateway.apps.clone();
        tokio::task::spawn_blocking(move || apps.warm_up());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let backends = gateway.apps.runtime().models().available_backends();
    tracing::info!(address = %listener.local_addr()?, ?backends, "edgenn listening");
    // Scripts and tests wait for this line.
    println!("edgenn listening on http://{}", listener.local_addr()?);
    http::serve::serve(listener, gateway.router(), &config.http, shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
