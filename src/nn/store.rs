//! The model store: the catalog of models the gateway knows (shared ones, and those bundled
//! with app deployments) and the graphs loaded from them, one per (model, backend), in a
//! `moka` cache bounded by the bytes they hold. Concurrent first uses of a graph wait for one
//! load instead of loading twice.

use super::backend::{self, BackendKind, Backends, Execution, LoadedGraph};
use super::load_limit::{LimitError, LoadLimit};
use super::manifest::{self, ManifestError, ModelManifest, TensorSpec};
use super::registry::{AppGraphRegistry, ModelAccess};
use super::{ModelKey, NnError};
use crate::metrics::{Metrics, ModelLabels};
use moka::sync::Cache;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, Id, NamedTensor};

/// A model known to the gateway: its manifest and where its ONNX file is.
#[derive(Debug)]
pub struct CatalogEntry {
    pub manifest: ModelManifest,
    pub onnx_path: PathBuf,
    pub size_bytes: u64,
    /// Bumped when a model of the same key is registered again, so cached graphs of the old
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

/// Why a graph could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the backend is not available: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Backend(#[from] backend::Error),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct GraphKey {
    model: ModelKey,
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
    catalog: RwLock<HashMap<ModelKey, Arc<CatalogEntry>>>,
    cache: Cache<GraphKey, CachedGraph>,
    capacity_bytes: u64,
    backends: Backends,
    next_generation: AtomicU64,
    metrics: Arc<Metrics>,
    /// Loads each model in a child process under a memory limit first, and weighs its graph by
    /// what that load measured; `None` (in-process tests): by the file's size.
    load_limit: Option<LoadLimit>,
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
            load_limit: None,
        }
    }

    /// Loads every model under `limit` (see [`LoadLimit`]) before it enters the process.
    pub fn with_load_limit(mut self, limit: LoadLimit) -> Self {
        self.load_limit = Some(limit);
        self
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Adds (or replaces) the shared model in `dir`, described by its `model.toml`.
    pub fn register_dir(&self, dir: &Path) -> Result<ModelManifest, NnError> {
        let manifest = ModelManifest::from_dir(dir)?;
        self.register_file(ModelKey::shared(&manifest.name), manifest.clone(), dir.join(&manifest.file))?;
        Ok(manifest)
    }

    /// Adds a model from one ONNX file under `key`: a shared model (`edgenn run --model`) or a
    /// model bundled with an app deployment.
    pub fn register_file(&self, key: ModelKey, manifest: ModelManifest, onnx_path: PathBuf) -> Result<(), NnError> {
        let entry = self.new_entry(manifest, onnx_path)?;
        self.swap_in(key, entry);
        Ok(())
    }

    /// Adds (or replaces) the shared model in `dir` only once it loads on its default backend:
    /// until then the model of that name, if any, serves on unchanged; then the new one takes
    /// its place at once, already loaded. Requests in flight finish on the graph they hold.
    pub fn install_dir(&self, dir: &Path) -> Result<ModelManifest, NnError> {
        let manifest = ModelManifest::from_dir(dir)?;
        self.install_file(manifest.clone(), dir.join(&manifest.file))?;
        Ok(manifest)
    }

    /// Like [`ModelStore::install_dir`] for a shared model given as a manifest and a file.
    pub fn install_file(&self, manifest: ModelManifest, onnx_path: PathBuf) -> Result<(), NnError> {
        let key = ModelKey::shared(&manifest.name);
        let entry = self.new_entry(manifest, onnx_path)?;
        let backend = entry.manifest.backend;
        if let Err(why) = self.backends.get(backend) {
            return Err(NnError::BackendUnavailable(backend, why));
        }
        // Loaded under the new entry's generation, which no request can name yet.
        self.cache
            .try_get_with(Self::graph_key(&key, &entry, backend), || self.load(&key, &entry, backend))
            .map_err(|source| NnError::Load { model: key.to_string(), backend, source })?;
        self.swap_in(key, entry);
        Ok(())
    }

    fn new_entry(&self, manifest: ModelManifest, onnx_path: PathBuf) -> Result<CatalogEntry, NnError> {
        let size_bytes = std::fs::metadata(&onnx_path)
            .map_err(|source| NnError::Unreadable { name: manifest.name.clone(), path: onnx_path.clone(), source })?
            .len();
        Ok(CatalogEntry {
            manifest,
            onnx_path,
            size_bytes,
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Makes `entry` the model of `key` and drops the graphs of the one it replaces.
    fn swap_in(&self, key: ModelKey, entry: CatalogEntry) {
        let replaced =
            self.catalog.write().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), Arc::new(entry));
        if let Some(old) = replaced {
            self.invalidate(&key, &old);
        }
    }

    fn invalidate(&self, key: &ModelKey, entry: &CatalogEntry) {
        for backend in BackendKind::ALL {
            self.cache.invalidate(&Self::graph_key(key, entry, backend));
        }
    }

    /// Forgets models (bundled ones, when their app version is gone; shared ones taken out of
    /// service) and drops their graphs.
    pub fn unregister(&self, keys: &[ModelKey]) {
        let mut catalog = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Some(entry) = catalog.remove(key) {
                self.invalidate(key, &entry);
            }
        }
    }

    /// Registers every sub-directory of `root` that holds a `model.toml`: their names and
    /// directories.
    pub fn register_all(&self, root: &Path) -> Result<Vec<(String, PathBuf)>, NnError> {
        let read_error = |e: std::io::Error| ManifestError::Read { path: root.to_path_buf(), source: e };
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(read_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.join(manifest::MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        dirs.into_iter().map(|dir| self.register_dir(&dir).map(|m| (m.name, dir))).collect()
    }

    /// Whether a shared model of this name exists.
    pub fn has_shared(&self, name: &str) -> bool {
        self.entry(&ModelKey::shared(name)).is_some()
    }

    /// The manifest of a shared model.
    pub fn shared_manifest(&self, name: &str) -> Option<ModelManifest> {
        self.entry(&ModelKey::shared(name)).map(|entry| entry.manifest.clone())
    }

    fn entry(&self, key: &ModelKey) -> Option<Arc<CatalogEntry>> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// The shared models (bundled ones are private to their app).
    pub fn list(&self) -> Vec<ModelInfo> {
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let mut models: Vec<ModelInfo> = catalog
            .iter()
            .filter(|(key, _)| key.is_shared())
            .map(|(key, entry)| ModelInfo {
                name: entry.manifest.name.clone(),
                default_backend: entry.manifest.backend,
                backends: self.available_backends(),
                size_bytes: entry.size_bytes,
                description: entry.manifest.description.clone(),
                loaded: BackendKind::ALL
                    .into_iter()
                    .filter(|&backend| self.cache.contains_key(&Self::graph_key(key, entry, backend)))
                    .collect(),
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    pub fn available_backends(&self) -> Vec<BackendKind> {
        self.backends.kinds()
    }

    fn graph_key(key: &ModelKey, entry: &CatalogEntry, backend: BackendKind) -> GraphKey {
        GraphKey { model: key.clone(), backend, generation: entry.generation }
    }

    /// The shared graph of model `key` on `backend` (its manifest's default if `None`),
    /// loading it on first use.
    pub fn graph(&self, key: &ModelKey, backend: Option<BackendKind>) -> Result<(SharedGraph, BackendKind), NnError> {
        let entry = self.entry(key).ok_or_else(|| NnError::UnknownModel(key.to_string()))?;
        let backend = backend.unwrap_or(entry.manifest.backend);
        if let Err(why) = self.backends.get(backend) {
            return Err(NnError::BackendUnavailable(backend, why));
        }
        let graph_key = Self::graph_key(key, &entry, backend);
        if let Some(cached) = self.cache.get(&graph_key) {
            self.metrics.cache_hits.inc();
            return Ok((cached.graph, backend));
        }
        self.metrics.cache_misses.inc();
        let cached = self
            .cache
            .try_get_with(graph_key, || self.load(key, &entry, backend))
            .map_err(|source| NnError::Load { model: key.to_string(), backend, source })?;
        Ok((cached.graph, backend))
    }

    fn load(&self, key: &ModelKey, entry: &CatalogEntry, backend: BackendKind) -> Result<CachedGraph, LoadError> {
        let started = std::time::Instant::now();
        let backend_impl = self.backends.get(backend).map_err(LoadError::Unavailable)?;
        // Measured in a child process first: a model that grows past the limit when loaded, or
        // past the whole cache, never enters this one.
        let measured = self.load_limit.as_ref().map(|limit| limit.measure(&entry.onnx_path, backend)).transpose();
        let measured = measured.map_err(LoadError::from).and_then(|bytes| match bytes {
            Some(bytes) if bytes > self.capacity_bytes => Err(LimitError::TooLarge(self.capacity_bytes).into()),
            bytes => Ok(bytes),
        });
        let result = measured.and_then(|measured| {
            let onnx = std::fs::read(&entry.onnx_path)
                .map_err(|source| LoadError::Read { path: entry.onnx_path.clone(), source })?;
            Ok((backend_impl.load_graph(&onnx)?, measured))
        });
        match &result {
            Ok((_, measured)) => {
                self.metrics.model_loads.inc();
                let (elapsed_ms, measured_kib) = (started.elapsed().as_millis() as u64, measured.map(|b| b >> 10));
                tracing::info!(model = %key, %backend, elapsed_ms, measured_kib, "model loaded");
            }
            Err(error) => {
                self.metrics.model_load_failures.inc();
                tracing::warn!(model = %key, %backend, error = %super::describe(error), "model failed to load");
            }
        }
        let labels = ModelLabels { model: key.to_string(), backend: backend.to_string() };
        let histogram = self.metrics.inference_duration.get_or_create(&labels).clone();
        result.map(|(inner, measured)| {
            // What the load took, measured; without a measure, an estimate from the file.
            let weight = measured.unwrap_or(entry.size_bytes * backend_impl.memory_copies());
            CachedGraph {
                graph: Arc::new(MeteredGraph {
                    inner,
                    histogram,
                    inputs: entry.manifest.inputs.iter().cloned().collect(),
                }),
                weight_kib: u32::try_from(weight.div_ceil(1024)).unwrap_or(u32::MAX),
            }
        })
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
        AppGraphRegistry::new(self.clone(), access)
    }
}

/// A backend graph that times every `compute` into the per-(model, backend) inference
/// histogram, and refuses inputs with values its manifest says the model cannot take.
pub struct MeteredGraph {
    inner: Arc<dyn LoadedGraph>,
    histogram: Histogram,
    /// The manifest's inputs, in the model's order (their `range`s).
    inputs: Arc<[TensorSpec]>,
}

impl MeteredGraph {
    pub fn execution(&self) -> MeteredExecution {
        MeteredExecution {
            inner: self.inner.execution(),
            histogram: self.histogram.clone(),
            inputs: self.inputs.clone(),
        }
    }

    pub fn signature(&self) -> &backend::Signature {
        self.inner.signature()
    }
}

pub struct MeteredExecution {
    inner: Box<dyn Execution>,
    histogram: Histogram,
    inputs: Arc<[TensorSpec]>,
}

impl MeteredExecution {
    /// Host memory this execution holds for the guest.
    pub fn held_bytes(&self) -> usize {
        self.inner.held_bytes()
    }

    /// Refuses `tensor` as input `id` if a value is outside what the manifest says it takes.
    fn check_range(&self, id: &Id, tensor: &Tensor) -> Result<(), BackendError> {
        let spec = match id {
            Id::Index(index) => self.inputs.get(*index as usize),
            Id::Name(name) => self.inputs.iter().find(|spec| &spec.name == name),
        };
        match spec.and_then(|spec| spec.out_of_range(tensor).map(|found| (spec, found))) {
            None => Ok(()),
            Some((spec, (index, value))) => {
                let [min, max] = spec.range.expect("only a range finds a value out of it");
                Err(backend::Error::OutOfRange(format!(
                    "input {:?}: element {index} is {value}; the model takes values from {min} to {max}",
                    spec.name
                ))
                .into())
            }
        }
    }
}

impl BackendExecutionContext for MeteredExecution {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        self.check_range(&id, tensor)?;
        self.inner.set_input(id, tensor)
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        self.inner.get_output(id)
    }

    fn compute(&mut self, inputs: Option<Vec<NamedTensor>>) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        for input in inputs.iter().flatten() {
            self.check_range(&Id::Name(input.name.clone()), &input.tensor)?;
        }
        let started = std::time::Instant::now();
        let result = self.inner.compute(inputs);
        self.histogram.observe(started.elapsed().as_secs_f64());
        result
    }
}
