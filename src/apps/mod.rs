//! Apps: a guest module plus its manifest (route, models it may load, limits, config). The
//! registry maps names and routes to apps and runs a request in the app's sandbox on a blocking
//! thread.
//!
//! Two bounds keep one tenant from starving the others: each app runs at most
//! `limits.max_concurrency` requests at once with as many waiting (more are refused at once,
//! before their bodies are read), and all apps together hold at most the runtime's instance
//! slots. A request past its deadline is answered 504 on time even if its thread is still in a
//! host call that cannot be interrupted; that thread keeps the app's turn until it returns, so
//! the work it still does is charged to the app that caused it.

pub mod manifest;

use crate::nn::manifest::ModelManifest;
use crate::nn::{ModelAccess, ModelKey, ModelStore, NnError};
use crate::runtime::wagi::{GuestRequest, config_variable};
use crate::runtime::{AppPolicy, GuestModule, GuestRun, Runtime, RuntimeError};
pub use manifest::{AppManifest, ManifestError};
use manifest::{MANIFEST_FILE, MAX_ROUTE_BYTES, is_at_or_below};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A deployed app, ready to serve.
pub struct App {
    pub manifest: AppManifest,
    module: GuestModule,
    policy: AppPolicy,
    pub wasm_bytes: u64,
    /// Store keys of this version's bundled models, forgotten when the last request using this
    /// version is done (in-flight requests keep the `Arc<App>` alive).
    bundled_keys: Vec<ModelKey>,
    models: Arc<ModelStore>,
    /// Turns of this app: `limits.max_concurrency` permits.
    turns: Arc<Semaphore>,
    /// Requests waiting for a turn; at most `limits.max_concurrency`.
    waiting: AtomicU64,
}

impl Drop for App {
    fn drop(&mut self) {
        self.models.unregister(&self.bundled_keys);
    }
}

/// One request's turn in its app, taken before its body is read and held until its guest is
/// done (even past the answer, see the module docs).
pub struct AppTurn {
    _permit: OwnedSemaphorePermit,
}

impl App {
    pub fn max_body_bytes(&self) -> usize {
        self.manifest.limits.max_body_bytes
    }

    /// Takes a turn in this app: at once if one is free; else waits, if fewer than
    /// `max_concurrency` already wait, for at most the app's deadline; else refuses at once.
    pub async fn take_turn(&self) -> Result<AppTurn, CallError> {
        if let Ok(permit) = self.turns.clone().try_acquire_owned() {
            return Ok(AppTurn { _permit: permit });
        }
        let limit = self.manifest.limits.max_concurrency as u64;
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(CallError::AppBusy { app: self.manifest.name.clone() });
        }
        let wait = tokio::time::timeout(self.policy.deadline, self.turns.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match wait {
            Ok(Ok(permit)) => Ok(AppTurn { _permit: permit }),
            Ok(Err(_)) => Err(CallError::ShuttingDown),
            Err(_) => Err(CallError::AppBusy { app: self.manifest.name.clone() }),
        }
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
            max_concurrency: m.limits.max_concurrency,
            wasm_bytes: self.wasm_bytes,
            abi: self.module.abi(),
            allowed_outbound_hosts: m.allowed_outbound_hosts.clone(),
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
    pub max_concurrency: usize,
    pub wasm_bytes: u64,
    /// `wagi` (a core module) or `component` (wasi:http/proxy).
    pub abi: &'static str,
    pub allowed_outbound_hosts: Vec<String>,
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
    #[error("route {route:?} of app {app:?} overlaps route {taken:?}, served by app {other:?}")]
    RouteTaken { route: String, app: String, taken: String, other: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("app {app:?} is busy: too many of its requests are running or waiting")]
    AppBusy { app: String },
    #[error("the app crashed the worker thread")]
    Panicked,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Arc<App>>,
    /// Extra routes (e.g. `/v1/classify`) -> app name. Every app is also at `/apps/<name>`.
    by_route: HashMap<String, String>,
}

/// How long past its deadline a request may take to be answered 504: the runtime stops the
/// guest at the deadline; this covers the unwinding and, as a backstop, a host call that cannot
/// be stopped.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(250);

pub struct Apps {
    runtime: Arc<Runtime>,
    table: RwLock<Table>,
    slots: Arc<Semaphore>,
    deployments: AtomicU64,
    /// The apps' models are loaded ([`Apps::warm_up`] has run): what readiness reports.
    warm: AtomicBool,
}

impl Apps {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let slots = Arc::new(Semaphore::new(runtime.config().max_instances as usize));
        Self { runtime, table: RwLock::default(), slots, deployments: AtomicU64::new(1), warm: AtomicBool::new(false) }
    }

    /// Whether the models to warm up are loaded (or there is no warm-up to wait for).
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// Readiness without a warm-up: models load on first use.
    pub fn skip_warm_up(&self) {
        self.warm.store(true, Ordering::Release);
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads the app whose `edgenn.toml` is in `dir`, validates it (module compiles and links,
    /// declared models exist) and makes it live, replacing an app of the same name.
    pub fn deploy_dir(&self, dir: &Path) -> Result<Arc<App>, DeployError> {
        self.deploy_manifest(AppManifest::from_dir(dir)?, dir)
    }

    /// Like [`Apps::deploy_dir`] for a version the admin API stored: it must be app `name` and
    /// run the stored module (see [`AppManifest::from_stored_dir`]).
    pub fn deploy_stored(&self, dir: &Path, name: &str) -> Result<Arc<App>, DeployError> {
        self.deploy_manifest(AppManifest::from_stored_dir(dir, name)?, dir)
    }

    /// Like [`Apps::deploy_dir`] for an app pulled as an artifact: it runs the artifact's own
    /// module (see [`AppManifest::from_artifact_dir`]).
    pub fn deploy_artifact(&self, dir: &Path) -> Result<Arc<App>, DeployError> {
        self.deploy_manifest(AppManifest::from_artifact_dir(dir)?, dir)
    }

    /// Like [`Apps::deploy_stored`] for an app the gateway comes back with after a restart: a
    /// shared model it declares that is gone since (removed from the repository) does not
    /// refuse it, so the app is not lost; its guest gets wasi-nn's `not-found` for that model.
    pub fn restore_stored(&self, dir: &Path, name: &str) -> Result<Arc<App>, DeployError> {
        let manifest = AppManifest::from_stored_dir(dir, name)?;
        for model in manifest.models.iter().filter(|m| !self.runtime.models().has_shared(m)) {
            tracing::warn!(app = %name, %model, "the app declares a model the gateway no longer has");
        }
        self.deploy_checked(manifest, dir, false)
    }

    /// Like [`Apps::deploy_dir`] with a manifest given rather than read: paths in it are
    /// relative to `dir`.
    pub fn deploy_manifest(&self, manifest: AppManifest, dir: &Path) -> Result<Arc<App>, DeployError> {
        self.deploy_checked(manifest, dir, true)
    }

    fn deploy_checked(&self, manifest: AppManifest, dir: &Path, require_models: bool) -> Result<Arc<App>, DeployError> {
        let wasm_path = dir.join(&manifest.wasm);
        let wasm = std::fs::read(&wasm_path).map_err(|source| ManifestError::Read { path: wasm_path, source })?;
        let metrics = self.runtime.metrics();
        let deployed = self.deploy(manifest, &wasm, dir, require_models);
        match &deployed {
            Ok(_) => metrics.deploys.inc(),
            Err(_) => metrics.failed_deploys.inc(),
        };
        deployed
    }

    /// Validates and makes live an app whose bundled model files are in `dir`. Nothing changes
    /// for the running version unless every check passes.
    fn deploy(
        &self,
        manifest: AppManifest,
        wasm: &[u8],
        dir: &Path,
        require_models: bool,
    ) -> Result<Arc<App>, DeployError> {
        let models = self.runtime.models().clone();
        for model in &manifest.models {
            if require_models && !models.has_shared(model) {
                return Err(DeployError::UnknownModel { app: manifest.name.clone(), model: model.clone() });
            }
        }
        // Checked when the manifest was parsed; parsed again here, not trusted.
        let outbound = manifest
            .outbound_origins()
            .map_err(|message| ManifestError::Invalid { path: dir.join(MANIFEST_FILE), message })?;
        let module =
            self.runtime.compile(wasm).map_err(|source| DeployError::Module { app: manifest.name.clone(), source })?;
        let bundled = self.register_bundled(&manifest, dir)?;
        let config_env: Vec<(String, String)> =
            manifest.config.iter().map(|(k, v)| (config_variable(k), v.clone())).collect();
        let access = ModelAccess { all_shared: false, shared: manifest.models.clone(), bundled: bundled.clone() };
        let policy = AppPolicy {
            name: manifest.name.clone(),
            memory_bytes: manifest.limits.memory_mib << 20,
            deadline: Duration::from_millis(manifest.limits.deadline_ms),
            models: Arc::new(access),
            config_env: config_env.into(),
            outbound: outbound.into(),
        };
        let bundled_keys = bundled.into_iter().map(|(_, key)| key).collect();
        let turns = Arc::new(Semaphore::new(manifest.limits.max_concurrency));
        let app = Arc::new(App {
            manifest,
            module,
            policy,
            wasm_bytes: wasm.len() as u64,
            bundled_keys,
            models,
            turns,
            waiting: AtomicU64::new(0),
        });

        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let name = &app.manifest.name;
        // A route equal to, above or below another app's would take some of its requests.
        for route in &app.manifest.routes {
            let overlap = table.by_route.iter().find(|(taken, owner)| {
                *owner != name && (is_at_or_below(route, taken) || is_at_or_below(taken, route))
            });
            if let Some((taken, other)) = overlap {
                return Err(DeployError::RouteTaken {
                    route: route.clone(),
                    app: name.clone(),
                    taken: taken.clone(),
                    other: other.clone(),
                });
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
    fn register_bundled(&self, manifest: &AppManifest, dir: &Path) -> Result<Vec<(String, ModelKey)>, DeployError> {
        let models = self.runtime.models();
        let deployment = self.deployments.fetch_add(1, Ordering::Relaxed);
        let mut registered: Vec<(String, ModelKey)> = Vec::new();
        let mut result = Ok(());
        for bundled in &manifest.bundled_models {
            let key = ModelKey::Bundled { app: manifest.name.clone(), deployment, name: bundled.name.clone() };
            let model_manifest = ModelManifest {
                name: bundled.name.clone(),
                file: bundled.file.clone(),
                backend: bundled.backend,
                description: bundled.description.clone(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            };
            let loaded = models
                .register_file(key.clone(), model_manifest, dir.join(&bundled.file))
                .and_then(|()| models.graph(&key, None).map(|_| ()));
            registered.push((bundled.name.clone(), key));
            if let Err(source) = loaded {
                result =
                    Err(DeployError::BundledModel { app: manifest.name.clone(), model: bundled.name.clone(), source });
                break;
            }
        }
        if result.is_err() {
            let keys: Vec<ModelKey> = registered.iter().map(|(_, key)| key.clone()).collect();
            models.unregister(&keys);
        }
        result.map(|()| registered)
    }

    /// Loads the shared models the apps declare on every available backend, so first requests
    /// do not pay for it. (Bundled models were loaded when their app was deployed.) Readiness
    /// follows, as Triton's strict readiness does: only once every one loaded on its default
    /// backend, or on another where this gateway lacks that one (another backend failing is
    /// logged: a model need not run on all of them). A declared model the gateway no longer
    /// has (removed from the repository) is not waited for.
    pub fn warm_up(&self) {
        let models = self.runtime.models();
        let mut names: Vec<String> = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            table.by_name.values().flat_map(|app| app.manifest.models.clone()).collect()
        };
        names.sort();
        names.dedup();
        names.retain(|name| models.has_shared(name));
        let mut failed = 0;
        for name in &names {
            let key = ModelKey::shared(name);
            let mut loaded = Vec::new();
            let default = match models.graph(&key, None) {
                Ok((_, backend)) => {
                    loaded.push(backend);
                    Ok(())
                }
                Err(error) => Err(error),
            };
            let others: Vec<_> = models.available_backends().into_iter().filter(|b| !loaded.contains(b)).collect();
            for backend in others {
                match models.graph(&key, Some(backend)) {
                    Ok(_) => loaded.push(backend),
                    Err(error) => {
                        tracing::warn!(model = %name, %backend, error = %crate::nn::describe(&error), "warm-up failed on one backend")
                    }
                }
            }
            match default {
                Ok(()) => {}
                // Where this gateway lacks the default backend, loading on another one will do.
                Err(NnError::BackendUnavailable(..)) if !loaded.is_empty() => {}
                Err(error) => {
                    failed += 1;
                    tracing::error!(model = %name, error = %crate::nn::describe(&error), "warm-up failed on the model's default backend");
                }
            }
        }
        if failed == 0 {
            self.warm.store(true, Ordering::Release);
        } else {
            tracing::error!(failed, "warm-up failed: the gateway does not report ready (/v2/health/ready)");
        }
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

    /// The app whose extra route (such as `/v1/classify`) is `path` or the longest segment
    /// prefix of it, with the length of that route. Routes are at most [`MAX_ROUTE_BYTES`]
    /// long, so only the prefixes within that many bytes are looked up: the cost is bounded
    /// whatever the path.
    pub fn route_for(&self, path: &str) -> Option<(Arc<App>, usize)> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let head = &path.as_bytes()[..path.len().min(MAX_ROUTE_BYTES + 1)];
        let mut ends: Vec<usize> =
            head.iter().enumerate().filter(|&(i, &b)| b == b'/' && i > 0).map(|(i, _)| i).collect();
        if path.len() <= MAX_ROUTE_BYTES {
            ends.push(path.len());
        }
        ends.iter().rev().find_map(|&end| {
            let name = table.by_route.get(path.get(..end)?)?;
            table.by_name.get(name).map(|app| (app.clone(), end))
        })
    }

    pub fn list(&self) -> Vec<AppInfo> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let mut apps: Vec<AppInfo> = table.by_name.values().map(|app| app.info()).collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        apps
    }

    /// Runs `request` in a fresh instance of `app`, off the async executor, in the turn taken
    /// with [`App::take_turn`]. Waits for a free instance slot rather than failing when all
    /// are busy. Answers by the deadline (plus [`DEADLINE_GRACE`]) whatever the guest does.
    pub async fn call(&self, app: Arc<App>, turn: AppTurn, request: GuestRequest) -> Result<GuestRun, CallError> {
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| CallError::ShuttingDown)?;
        let runtime = self.runtime.clone();
        let deadline = app.policy.deadline;
        let started = Instant::now();
        let worker = tokio::task::spawn_blocking(move || {
            // Both are released only when the guest's thread is free again.
            let (_permit, _turn) = (permit, turn);
            let result = runtime.run(&app.module, &app.policy, request);
            let took = started.elapsed();
            if took > deadline + DEADLINE_GRACE {
                let overrun_ms = (took - deadline).as_millis() as u64;
                tracing::warn!(app = %app.manifest.name, overrun_ms, "a host call ran past the deadline; the app's turn is free again");
            }
            result
        });
        // The runtime stops guests at their deadline, host calls included; this is the
        // backstop for a host call that cannot be stopped (a tract inference in progress).
        let outcome = match tokio::time::timeout(deadline + DEADLINE_GRACE, worker).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.runtime.metrics().deadline_kills.inc();
                tracing::warn!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "guest still in a host call past its deadline: answered 504"
                );
                return Err(CallError::Runtime(RuntimeError::DeadlineExceeded(deadline)));
            }
        };
        match outcome {
            Ok(result) => Ok(result?),
            Err(join_error) => {
                tracing::error!(error = %join_error, "guest worker thread panicked");
                Err(CallError::Panicked)
            }
        }
    }
}
