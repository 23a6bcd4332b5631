//! The wasi-nn host: which models exist (the catalog), loaded graphs shared by every app and
//! instance (a `moka` cache bounded by bytes), and the per-instance graph registry that answers
//! the guest's `load_by_name`.
//!
//! A graph is loaded once per (model, backend) and then shared: [`SharedGraph`] is an `Arc`
//! around a backend graph whose executions run concurrently (see each backend for how). The
//! guest reaches graphs through [`witx`], the host side of the wasi-nn ABI, within the limits
//! of [`limits`].

pub mod backend;
pub mod limits;
pub mod manifest;
pub mod witx;

use backend::{BackendKind, Execution, LoadedGraph};
use backend::ort::OrtBackend;
use backend::tract::TractBackend;
use manifest::{ManifestError, ModelManifest};
use moka::sync::Cache;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use crate::metrics::{Metrics, ModelLabels};
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, Id, NamedTensor};

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    #[error("{0}")]
    UnknownBackend(String),
    #[error("backend {0} is not available in this gateway: {1}")]
    BackendUnavailable(BackendKind, String),
    #[error("the app may not load model {0:?}: it is not declared in its manifest")]
    NotAllowed(String),
    #[error("cannot load model {model:?} on {backend}: {message}")]
    Load { model: String, backend: BackendKind, message: String },
    #[error("model {name:?}: {message}")]
    InvalidModel { name: String, message: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// The backends this process runs. ONNX Runtime is optional (its library may be missing);
/// tract is always there.
#[derive(Clone)]
pub struct Backends {
    pub ort: Result<OrtBackend, String>,
    pub tract: TractBackend,
}

impl Backends {
    fn load(&self, kind: BackendKind, onnx: &[u8]) -> Result<Arc<dyn LoadedGraph>, String> {
        let graph: Arc<dyn LoadedGraph> = match kind {
            BackendKind::Ort => Arc::new(self.ort.as_ref()?.load_graph(onnx).map_err(|e| describe(&e))?),
            BackendKind::Tract => Arc::new(self.tract.load_graph(onnx).map_err(|e| describe(&e))?),
        };
        Ok(graph)
    }

    /// How much memory one loaded graph holds, as a multiple of its ONNX file: ONNX Runtime
    /// keeps one copy per pooled session.
    fn copies(&self, kind: BackendKind) -> u64 {
        match (kind, &self.ort) {
            (BackendKind::Ort, Ok(ort)) => ort.options().sessions_per_model.max(1) as u64,
            _ => 1,
        }
    }
}

/// A backend error with its cause chain (wasmtime-wasi-nn's `Display` stops at the outer layer).
fn describe(error: &wasmtime_wasi_nn::backend::BackendError) -> String {
    use wasmtime_wasi_nn::backend::BackendError;
    match error {
        BackendError::BackendAccess(inner) => format!("{inner:#}"),
        other => other.to_string(),
    }
}

/// A model known to the gateway: its manifest and where its ONNX file is.
#[derive(Debug)]
pub struct CatalogEntry {
    pub manifest: ModelManifest,
    pub onnx_path: PathBuf,
    pub size_bytes: u64,
    /// Bumped when a model of the same name is registered again, so cached graphs of the old
    /// version are never handed out.
    generation: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub default_backend: BackendKind,
    pub backends: Vec<BackendKind>,
    pub size_bytes: u64,
    pub description: Option<String>,
    pub loaded: Vec<BackendKind>,
}

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub load_failures: u64,
    pub entries: u64,
    pub bytes_held: u64,
    pub capacity_bytes: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct GraphKey {
    model: Arc<str>,
    backend: BackendKind,
    generation: u64,
}

/// A loaded graph as every app and instance shares it.
pub type SharedGraph = Arc<MeteredGraph>;

#[derive(Clone)]
struct CachedGraph {
    graph: SharedGraph,
    weight_kib: u32,
}

pub struct ModelStore {
    catalog: RwLock<HashMap<String, Arc<CatalogEntry>>>,
    cache: Cache<GraphKey, CachedGraph>,
    capacity_bytes: u64,
    backends: Backends,
    next_generation: AtomicU64,
    metrics: Arc<Metrics>,
}

impl ModelStore {
    pub fn new(backends: Backends, capacity_bytes: u64, metrics: Arc<Metrics>) -> Self {
        // Weights are in KiB so that a u32 weight covers models up to 4 TiB.
        let cache = Cache::builder()
            .max_capacity(capacity_bytes / 1024)
            .weigher(|_key: &GraphKey, value: &CachedGraph| value.weight_kib)
            .build();
        Self {
            catalog: RwLock::default(),
            cache,
            capacity_bytes,
            backends,
            next_generation: AtomicU64::new(1),
            metrics,
        }
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Adds (or replaces) the model in `dir`, described by its `model.toml`.
    pub fn register_dir(&self, dir: &Path) -> Result<ModelManifest, NnError> {
        let manifest = ModelManifest::from_dir(dir)?;
        self.register_file(&manifest.name, manifest.clone(), dir.join(&manifest.file))?;
        Ok(manifest)
    }

    /// Adds a model from one ONNX file under `key`: a shared name (`edgenn run --model`), or,
    /// for a model bundled with an app deployment, a key no shared model can have (it contains
    /// `/`), so only that deployment's [`ModelAccess`] reaches it.
    pub fn register_file(&self, key: &str, mut manifest: ModelManifest, onnx_path: PathBuf) -> Result<(), NnError> {
        let size_bytes = std::fs::metadata(&onnx_path)
            .map_err(|e| NnError::InvalidModel {
                name: manifest.name.clone(),
                message: format!("cannot read {}: {e}", onnx_path.display()),
            })?
            .len();
        manifest.name = key.to_string();
        let entry = CatalogEntry {
            manifest,
            onnx_path,
            size_bytes,
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
        };
        self.catalog.write().unwrap_or_else(PoisonError::into_inner).insert(key.to_string(), Arc::new(entry));
        Ok(())
    }

    /// Forgets models (bundled ones, when their app version is gone) and drops their graphs.
    pub fn unregister(&self, keys: &[String]) {
        let mut catalog = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Some(entry) = catalog.remove(key) {
                for backend in BackendKind::ALL {
                    self.cache.invalidate(&Self::key(&entry, backend));
                }
            }
        }
    }

    /// Registers every sub-directory of `root` that holds a `model.toml`.
    pub fn register_all(&self, root: &Path) -> Result<Vec<String>, NnError> {
        let read_error = |e: std::io::Error| ManifestError::Read { path: root.to_path_buf(), source: e };
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(read_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.join(manifest::MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        dirs.iter().map(|dir| self.register_dir(dir).map(|m| m.name)).collect()
    }

    pub fn entry(&self, name: &str) -> Option<Arc<CatalogEntry>> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    pub fn list(&self) -> Vec<ModelInfo> {
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let mut models: Vec<ModelInfo> = catalog
            .values()
            // Bundled models are private to their app.
            .filter(|entry| !entry.manifest.name.contains('/'))
            .map(|entry| ModelInfo {
                name: entry.manifest.name.clone(),
                default_backend: entry.manifest.backend,
                backends: self.available_backends(),
                size_bytes: entry.size_bytes,
                description: entry.manifest.description.clone(),
                loaded: BackendKind::ALL
                    .into_iter()
                    .filter(|&backend| self.cache.contains_key(&Self::key(entry, backend)))
                    .collect(),
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    pub fn available_backends(&self) -> Vec<BackendKind> {
        BackendKind::ALL.into_iter().filter(|&b| b != BackendKind::Ort || self.backends.ort.is_ok()).collect()
    }

    /// Splits `model` or `model@backend` and looks the model up.
    pub fn resolve(&self, reference: &str) -> Result<(Arc<CatalogEntry>, BackendKind), NnError> {
        let (name, backend) = match reference.split_once('@') {
            Some((name, backend)) => (name, Some(backend.parse::<BackendKind>().map_err(NnError::UnknownBackend)?)),
            None => (reference, None),
        };
        let entry = self.entry(name).ok_or_else(|| NnError::UnknownModel(name.to_string()))?;
        let backend = backend.unwrap_or(entry.manifest.backend);
        Ok((entry, backend))
    }

    fn key(entry: &CatalogEntry, backend: BackendKind) -> GraphKey {
        GraphKey { model: Arc::from(entry.manifest.name.as_str()), backend, generation: entry.generation }
    }

    /// The shared graph for `model[@backend]`, loading it on first use. Concurrent first uses
    /// wait for one load instead of loading twice.
    pub fn graph(&self, reference: &str) -> Result<(SharedGraph, BackendKind), NnError> {
        let (entry, backend) = self.resolve(reference)?;
        if let Err(why) = &self.backends.ort
            && backend == BackendKind::Ort
        {
            return Err(NnError::BackendUnavailable(backend, why.clone()));
        }
        let key = Self::key(&entry, backend);
        if let Some(cached) = self.cache.get(&key) {
            self.metrics.cache_hits.inc();
            return Ok((cached.graph, backend));
        }
        self.metrics.cache_misses.inc();
        let cached = self
            .cache
            .try_get_with(key, || self.load(&entry, backend))
            .map_err(|e| NnError::Load { model: entry.manifest.name.clone(), backend, message: e.to_string() })?;
        Ok((cached.graph, backend))
    }

    fn load(&self, entry: &CatalogEntry, backend: BackendKind) -> Result<CachedGraph, String> {
        let started = std::time::Instant::now();
        let result = std::fs::read(&entry.onnx_path)
            .map_err(|e| format!("cannot read {}: {e}", entry.onnx_path.display()))
            .and_then(|onnx| self.backends.load(backend, &onnx));
        let labels = ModelLabels { model: entry.manifest.name.clone(), backend: backend.to_string() };
        let result = result.map(|inner| {
            let histogram = self.metrics.inference_duration.get_or_create(&labels).clone();
            Arc::new(MeteredGraph { inner, histogram })
        });
        match &result {
            Ok(_) => {
                self.metrics.model_loads.inc();
                tracing::info!(model = %entry.manifest.name, %backend, elapsed_ms = started.elapsed().as_millis() as u64, "model loaded");
            }
            Err(message) => {
                self.metrics.model_load_failures.inc();
                tracing::warn!(model = %entry.manifest.name, %backend, %message, "model failed to load");
            }
        }
        let weight_kib = (entry.size_bytes * self.backends.copies(backend)).div_ceil(1024);
        result.map(|graph| CachedGraph { graph, weight_kib: u32::try_from(weight_kib).unwrap_or(u32::MAX) })
    }

    /// Cache statistics; also refreshes the cache gauges of the metrics.
    pub fn stats(&self) -> CacheStats {
        self.cache.run_pending_tasks();
        let stats = CacheStats {
            hits: self.metrics.cache_hits.get(),
            misses: self.metrics.cache_misses.get(),
            loads: self.metrics.model_loads.get(),
            load_failures: self.metrics.model_load_failures.get(),
            entries: self.cache.entry_count(),
            bytes_held: self.cache.weighted_size() * 1024,
            capacity_bytes: self.capacity_bytes,
        };
        self.metrics.cache_bytes.set(stats.bytes_held);
        self.metrics.cache_entries.set(stats.entries);
        stats
    }

    /// The registry one guest instance sees: it resolves `load_by_name` through this store,
    /// within what `access` lets the app load.
    pub fn registry(self: &Arc<Self>, access: Arc<ModelAccess>) -> AppGraphRegistry {
        AppGraphRegistry { store: self.clone(), access, loaded: HashMap::new() }
    }
}

/// Which models an app may load: shared models it declares (or all, for a local runner or a
/// benchmark) and the models bundled with it, by their bare names.
#[derive(Debug, Clone, Default)]
pub struct ModelAccess {
    pub all_shared: bool,
    pub shared: Vec<String>,
    /// Bare name -> store key of the bundled model.
    pub bundled: Vec<(String, String)>,
}

impl ModelAccess {
    pub fn everything() -> Self {
        Self { all_shared: true, ..Self::default() }
    }

    /// The store key for a model name the guest asked for.
    fn resolve<'a>(&'a self, model: &'a str) -> Result<&'a str, NnError> {
        if let Some((_, key)) = self.bundled.iter().find(|(name, _)| name == model) {
            return Ok(key);
        }
        if self.all_shared || self.shared.iter().any(|m| m == model) {
            return Ok(model);
        }
        Err(NnError::NotAllowed(model.to_string()))
    }
}

/// Per-instance model registry: cheap to create (an `Arc` and an empty map), fills itself from
/// the shared store as the guest asks for models.
pub struct AppGraphRegistry {
    store: Arc<ModelStore>,
    access: Arc<ModelAccess>,
    loaded: HashMap<String, SharedGraph>,
}

impl AppGraphRegistry {
    /// The graph for a `load_by_name` reference (`model` or `model@backend`), within what the
    /// app may load. The same reference again is answered from this instance's map.
    pub fn load(&mut self, reference: &str) -> Result<SharedGraph, NnError> {
        if let Some(graph) = self.loaded.get(reference) {
            return Ok(graph.clone());
        }
        let graph = self.fetch(reference)?;
        self.loaded.insert(reference.to_string(), graph.clone());
        Ok(graph)
    }

    fn fetch(&self, reference: &str) -> Result<SharedGraph, NnError> {
        let (model, backend) = match reference.split_once('@') {
            Some((model, backend)) => (model, Some(backend)),
            None => (reference, None),
        };
        if model.contains('/') {
            // Store keys of bundled models are not names a guest may use.
            return Err(NnError::UnknownModel(model.to_string()));
        }
        let key = self.access.resolve(model)?;
        let reference = match backend {
            Some(backend) => format!("{key}@{backend}"),
            None => key.to_string(),
        };
        self.store.graph(&reference).map(|(graph, _)| graph)
    }
}

/// A backend graph that times every `compute` into the per-(model, backend) inference
/// histogram.
pub struct MeteredGraph {
    inner: Arc<dyn LoadedGraph>,
    histogram: Histogram,
}

impl MeteredGraph {
    pub fn execution(&self) -> MeteredExecution {
        MeteredExecution { inner: self.inner.execution(), histogram: self.histogram.clone() }
    }
}

pub struct MeteredExecution {
    inner: Box<dyn Execution>,
    histogram: Histogram,
}

impl MeteredExecution {
    /// Host memory this execution holds for the guest.
    pub fn held_bytes(&self) -> usize {
        self.inner.held_bytes()
    }
}

impl BackendExecutionContext for MeteredExecution {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        self.inner.set_input(id, tensor)
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        self.inner.get_output(id)
    }

    fn compute(&mut self, inputs: Option<Vec<NamedTensor>>) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let started = std::time::Instant::now();
        let result = self.inner.compute(inputs);
        self.histogram.observe(started.elapsed().as_secs_f64());
        result
    }
}
