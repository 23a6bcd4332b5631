//! edgenn: an AI inference edge gateway. WebAssembly guest apps (WAGI-style `wasm32-wasip1`
//! modules) run in wasmtime, one fresh instance per request, and call wasi-nn, which the host
//! serves with ONNX Runtime or tract from a shared model cache.
//!
//! One request reads top to bottom: [`http`] -> [`apps`] -> [`runtime`] -> [`nn`] ->
//! [`nn::backend`].

pub mod apps;
pub mod client;
pub mod http;
pub mod metrics;
pub mod nn;
pub mod runtime;
pub mod template;

use anyhow::Context;
use apps::Apps;
use apps::persist::AppStore;
use metrics::Metrics;
use nn::backend::BackendKind;
use nn::backend::ort::{OrtBackend, OrtOptions};
use nn::backend::tract::TractBackend;
use nn::{Backends, ModelStore};
use runtime::{Runtime, RuntimeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything `edgenn serve` is configured with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Directories each holding model directories (`<dir>/<name>/model.toml`).
    pub model_roots: Vec<PathBuf>,
    /// Single ONNX files served as shared models: `(name, path, backend)`.
    pub model_files: Vec<(String, PathBuf, BackendKind)>,
    /// App directories (each with an `edgenn.toml`).
    pub app_dirs: Vec<PathBuf>,
    /// Apps given as a manifest made on the command line, with the directory its paths are
    /// relative to.
    pub app_manifests: Vec<(apps::AppManifest, PathBuf)>,
    /// `libonnxruntime.so`; without it only tract serves.
    pub ort_library: Option<PathBuf>,
    pub ort: OrtOptions,
    pub model_cache_bytes: u64,
    pub runtime: RuntimeConfig,
    /// Load every declared model on every backend at start, in the background.
    pub warm_up: bool,
    /// The demo page's directory, served at `/` and `/demo/`.
    pub web_demo: Option<PathBuf>,
    /// Where deployed apps are kept; `None` disables the admin API and persistence.
    pub data_dir: Option<PathBuf>,
    /// Bearer token of the admin API; without one the admin API answers 401.
    pub admin_token: Option<String>,
    pub max_upload_bytes: usize,
    pub http: http::HttpLimits,
}

/// The gateway's parts, built and wired, not yet listening.
pub struct Gateway {
    pub apps: Arc<Apps>,
    pub web_demo: Option<PathBuf>,
    pub admin: Option<Arc<http::admin::Admin>>,
    pub http: http::HttpLimits,
}

impl Gateway {
    pub fn build(config: &GatewayConfig) -> anyhow::Result<Self> {
        let ort = match &config.ort_library {
            Some(path) => OrtBackend::new(path, config.ort),
            None => Err("no ONNX Runtime library configured (--ort-library or ORT_DYLIB_PATH)".to_string()),
        };
        if let Err(why) = &ort {
            tracing::warn!(%why, "ONNX Runtime backend disabled; tract still serves");
        }
        let metrics = Arc::new(Metrics::new());
        let backends = Backends { ort, tract: TractBackend };
        let models = Arc::new(ModelStore::new(backends, config.model_cache_bytes, metrics.clone()));
        for root in &config.model_roots {
            let names = models.register_all(root).with_context(|| format!("loading models from {}", root.display()))?;
            tracing::info!(root = %root.display(), models = ?names, "models registered");
        }
        for (name, path, backend) in &config.model_files {
            let manifest = nn::manifest::ModelManifest {
                name: name.clone(),
                file: path.clone(),
                backend: *backend,
                description: Some(format!("from {}", path.display())),
                inputs: Vec::new(),
                outputs: Vec::new(),
            };
            models.register_file(name, manifest, path.clone()).with_context(|| format!("model {name}"))?;
        }
        let runtime = Runtime::new(config.runtime.clone(), models, metrics).map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e:#}"))?;
        let runtime = Arc::new(runtime);
        let apps = Arc::new(Apps::new(runtime));
        for dir in &config.app_dirs {
            apps.deploy_dir(dir).with_context(|| format!("deploying the app in {}", dir.display()))?;
        }
        for (manifest, dir) in &config.app_manifests {
            let name = manifest.name.clone();
            apps.deploy_manifest(manifest.clone(), dir).with_context(|| format!("deploying app {name}"))?;
        }
        let admin = match &config.data_dir {
            Some(data_dir) => {
                let store = AppStore::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?;
                // Apps deployed over HTTP come back; one that no longer validates is logged,
                // not fatal, so the others still serve.
                for (name, version) in store.current_versions()? {
                    match apps.deploy_stored(&version, &name) {
                        Ok(app) => tracing::info!(app = %app.manifest.name, "restored deployed app"),
                        Err(error) => tracing::error!(dir = %version.display(), error = %format!("{error:#}"), "cannot restore app"),
                    }
                }
                let upload = http::admin::UploadLimits {
                    max_bytes: config.max_upload_bytes,
                    read_timeout: config.http.upload_read_timeout,
                };
                Some(Arc::new(http::admin::Admin::new(config.admin_token.clone(), store, upload)))
            }
            None => None,
        };
        Ok(Self { apps, web_demo: config.web_demo.clone(), admin, http: config.http.clone() })
    }

    /// Loads the apps' models on every available backend so first requests do not pay for it.
    pub fn warm_up(&self) {
        let models = self.apps.runtime().models().clone();
        let mut names: Vec<String> = self.apps.list().into_iter().flat_map(|app| app.models).collect();
        names.sort();
        names.dedup();
        for backend in models.available_backends() {
            for name in &names {
                if let Err(error) = models.graph(&format!("{name}@{backend}")) {
                    tracing::warn!(model = %name, %backend, %error, "warm-up failed");
                }
            }
        }
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.apps.clone(), self.web_demo.clone(), self.admin.clone(), self.http.clone())
    }
}

/// Builds the gateway and serves until Ctrl-C or SIGTERM.
pub async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    let gateway = Gateway::build(&config)?;
    if config.warm_up {
        let apps = gateway.apps.clone();
        let http = config.http.clone();
        tokio::task::spawn_blocking(move || Gateway { apps, web_demo: None, admin: None, http }.warm_up());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let backends: Vec<BackendKind> = gateway.apps.runtime().models().available_backends();
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
