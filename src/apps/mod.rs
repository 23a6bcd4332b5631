//! Apps: a guest module plus its manifest (route, models it may load, limits, config). The
//! registry maps names and routes to apps and runs a request in the app's sandbox on a blocking
//! thread, bounded by the runtime's instance slots.

pub mod manifest;
pub mod persist;

use crate::nn::manifest::ModelManifest;
use crate::nn::{ModelAccess, ModelStore, NnError};
use crate::runtime::wagi::{GuestRequest, config_variable};
use crate::runtime::{GuestModule, GuestRun, Runtime, RuntimeError, Sandbox};
pub use manifest::{AppManifest, ManifestError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// A deployed app, ready to serve.
pub struct App {
    pub manifest: AppManifest,
    module: GuestModule,
    sandbox: Sandbox,
    pub wasm_bytes: u64,
    /// Store keys of this version's bundled models, forgotten when the last request using this
    /// version is done (in-flight requests keep the `Arc<App>` alive).
    bundled_keys: Vec<String>,
    models: Arc<ModelStore>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.models.unregister(&self.bundled_keys);
    }
}

impl App {
    pub fn max_body_bytes(&self) -> usize {
        self.manifest.limits.max_body_bytes
    }

    pub fn info(&self) -> AppInfo {
        let m = &self.manifest;
        let mut routes = vec![format!("/apps/{}", m.name)];
        routes.extend(m.routes.iter().cloned());
        let mut models = m.models.clone();
        models.extend(m.bundled_models.iter().map(|b| b.name.clone()));
        AppInfo {
            name: m.name.clone(),
            routes,
            models,
            memory_mib: m.limits.memory_mib,
            deadline_ms: m.limits.deadline_ms,
            max_body_bytes: m.limits.max_body_bytes,
            wasm_bytes: self.wasm_bytes,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppInfo {
    pub name: String,
    pub routes: Vec<String>,
    pub models: Vec<String>,
    pub memory_mib: usize,
    pub deadline_ms: u64,
    pub max_body_bytes: usize,
    pub wasm_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("app {app:?}: {source}")]
    Module { app: String, source: RuntimeError },
    #[error("app {app:?} declares model {model:?}, which the gateway does not have")]
    UnknownModel { app: String, model: String },
    #[error("app {app:?}: bundled model {model:?}: {source}")]
    BundledModel { app: String, model: String, source: NnError },
    #[error("route {route:?} of app {app:?} is already served by app {other:?}")]
    RouteTaken { route: String, app: String, other: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("the app crashed the worker thread")]
    Panicked,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Arc<App>>,
    /// Extra routes (e.g. `/v1/classify`) -> app name. Every app is also at `/apps/<name>`.
    by_route: HashMap<String, String>,
}

pub struct Apps {
    runtime: Arc<Runtime>,
    table: RwLock<Table>,
    slots: Arc<Semaphore>,
    deployments: AtomicU64,
}

impl Apps {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let slots = Arc::new(Semaphore::new(runtime.config().max_instances as usize));
        Self { runtime, table: RwLock::default(), slots, deployments: AtomicU64::new(1) }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads the app whose `edgenn.toml` is in `dir`, validates it (module compiles and links,
    /// declared models exist) and makes it live, replacing an app of the same name.
    pub fn deploy_dir(&self, dir: &Path) -> Result<Arc<App>, DeployError> {
        self.deploy_manifest(AppManifest::from_dir(dir)?, dir)
    }

    /// Like [`Apps::deploy_dir`] with a manifest given rather than read: paths in it are
    /// relative to `dir`.
    pub fn deploy_manifest(&self, manifest: AppManifest, dir: &Path) -> Result<Arc<App>, DeployError> {
        let wasm_path = dir.join(&manifest.wasm);
        let wasm = std::fs::read(&wasm_path).map_err(|source| ManifestError::Read { path: wasm_path, source })?;
        let metrics = self.runtime.metrics();
        let deployed = self.deploy(manifest, &wasm, dir);
        match &deployed {
            Ok(_) => metrics.deploys.inc(),
            Err(_) => metrics.failed_deploys.inc(),
        };
        deployed
    }

    /// Validates and makes live an app whose bundled model files are in `dir`. Nothing changes
    /// for the running version unless every check passes.
    fn deploy(&self, manifest: AppManifest, wasm: &[u8], dir: &Path) -> Result<Arc<App>, DeployError> {
        let models = self.runtime.models().clone();
        for model in &manifest.models {
            if models.entry(model).is_none() {
                return Err(DeployError::UnknownModel { app: manifest.name.clone(), model: model.clone() });
            }
        }
        let module = self
            .runtime
            .compile(wasm)
            .map_err(|source| DeployError::Module { app: manifest.name.clone(), source })?;
        let bundled = self.register_bundled(&manifest, dir)?;
        let config_env: Vec<(String, String)> =
            manifest.config.iter().map(|(k, v)| (config_variable(k), v.clone())).collect();
        let access = ModelAccess { all_shared: false, shared: manifest.models.clone(), bundled: bundled.clone() };
        let sandbox = Sandbox {
            name: manifest.name.clone(),
            memory_bytes: manifest.limits.memory_mib << 20,
            deadline: Duration::from_millis(manifest.limits.deadline_ms),
            models: Arc::new(access),
            config_env: config_env.into(),
        };
        let bundled_keys = bundled.into_iter().map(|(_, key)| key).collect();
        let app = Arc::new(App { manifest, module, sandbox, wasm_bytes: wasm.len() as u64, bundled_keys, models });

        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let name = &app.manifest.name;
        for route in &app.manifest.routes {
            if let Some(other) = table.by_route.get(route).filter(|other| *other != name) {
                return Err(DeployError::RouteTaken { route: route.clone(), app: name.clone(), other: other.clone() });
            }
        }
        table.by_route.retain(|_, owner| owner != name);
        for route in &app.manifest.routes {
            table.by_route.insert(route.clone(), name.clone());
        }
        table.by_name.insert(name.clone(), app.clone());
        tracing::info!(app = %name, routes = ?app.manifest.routes, models = ?app.manifest.models, "app deployed");
        Ok(app)
    }

    /// Registers the app's bundled models under keys unique to this deployment and loads each
    /// on its backend, so a model that does not load fails the deploy, not a later request.
    fn register_bundled(&self, manifest: &AppManifest, dir: &Path) -> Result<Vec<(String, String)>, DeployError> {
        let models = self.runtime.models();
        let deployment = self.deployments.fetch_add(1, Ordering::Relaxed);
        let mut registered: Vec<(String, String)> = Vec::new();
        let mut result = Ok(());
        for bundled in &manifest.bundled_models {
            let key = format!("{}/{deployment}/{}", manifest.name, bundled.name);
            let model_manifest = ModelManifest {
                name: bundled.name.clone(),
                file: bundled.file.clone(),
                backend: bundled.backend,
                description: bundled.description.clone(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            };
            let loaded = models
                .register_file(&key, model_manifest, dir.join(&bundled.file))
                .and_then(|()| models.graph(&key).map(|_| ()));
            registered.push((bundled.name.clone(), key));
            if let Err(source) = loaded {
                result = Err(DeployError::BundledModel { app: manifest.name.clone(), model: bundled.name.clone(), source });
                break;
            }
        }
        if result.is_err() {
            let keys: Vec<String> = registered.iter().map(|(_, key)| key.clone()).collect();
            models.unregister(&keys);
        }
        result.map(|()| registered)
    }

    /// Takes an app out of service; in-flight requests finish on it.
    pub fn remove(&self, name: &str) -> Option<Arc<App>> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let app = table.by_name.remove(name)?;
        table.by_route.retain(|_, owner| owner != name);
        tracing::info!(app = %name, "app removed");
        Some(app)
    }

    pub fn get(&self, name: &str) -> Option<Arc<App>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner).by_name.get(name).cloned()
    }

    /// The app serving an exact extra route such as `/v1/classify`.
    pub fn by_route(&self, route: &str) -> Option<Arc<App>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.by_route.get(route).and_then(|name| table.by_name.get(name)).cloned()
    }

    pub fn list(&self) -> Vec<AppInfo> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let mut apps: Vec<AppInfo> = table.by_name.values().map(|app| app.info()).collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        apps
    }

    /// Runs `request` in a fresh instance of `app`, off the async executor. Waits for a free
    /// instance slot rather than failing when all are busy.
    pub async fn call(&self, app: Arc<App>, request: GuestRequest) -> Result<GuestRun, CallError> {
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| CallError::ShuttingDown)?;
        let runtime = self.runtime.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runtime.run(&app.module, &app.sandbox, request)
        })
        .await;
        match outcome {
            Ok(result) => Ok(result?),
            Err(join_error) => {
                tracing::error!(error = %join_error, "guest worker thread panicked");
                Err(CallError::Panicked)
            }
        }
    }
}
