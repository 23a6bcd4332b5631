//! ONNX Runtime backend (`ort`, library loaded at run time from `libonnxruntime.so`).
//!
//! `ort::Session::run` takes `&mut self` (some ONNX Runtime internals are not thread safe), so a
//! graph owns a small pool of sessions: concurrent inferences on one model each check out their
//! own session, and the pool's lock is held only to pop and push, never while a model runs.
//!
//! The request's deadline bounds both the wait for a session and the run itself: a run is
//! registered with the [`Watchdog`], which sets ONNX Runtime's terminate flag on its
//! `RunOptions` when the deadline passes (ONNX Runtime checks it between kernels).

use super::{
    Backend, BackendKind, ElementType, Error, Execution, LoadedGraph, Signature, Slots, TensorInfo, bytes_to_vec,
    dimensions_u32,
};
use crate::nn::limits::current_deadline;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Instant;
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, Id, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;

/// How ONNX Runtime sessions are set up for every graph.
#[derive(Debug, Clone, Copy)]
pub struct OrtOptions {
    /// Sessions per loaded model: how many inferences of one model may run at once.
    pub sessions_per_model: usize,
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
}

impl Default for OrtOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { sessions_per_model: cores, intra_threads: 1 }
    }
}

#[derive(Clone)]
pub struct OrtBackend {
    environment: ort::environment::Environment,
    options: OrtOptions,
}

/// ONNX Runtime could not be started from its library.
#[derive(Debug, thiserror::Error)]
#[error("cannot start ONNX Runtime from {path}")]
pub struct OrtUnavailable {
    path: std::path::PathBuf,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl OrtBackend {
    /// Loads the ONNX Runtime shared library. There is one ONNX Runtime environment per
    /// process: call this once and clone the backend.
    pub fn new(library: &Path, options: OrtOptions) -> Result<Self, OrtUnavailable> {
        let unavailable =
            |source: Box<dyn std::error::Error + Send + Sync>| OrtUnavailable { path: library.to_path_buf(), source };
        let environment = ort::init_from(library)
            .map_err(|e| unavailable(e.into()))?
            .with_name("edgenn")
            .build()
            .map_err(|e| unavailable(e.into()))?;
        Ok(Self { environment, options })
    }

    pub fn options(&self) -> OrtOptions {
        self.options
    }

    /// Builds one graph (a pool of sessions) from ONNX bytes.
    pub fn load(&self, onnx: &[u8]) -> Result<OrtGraph, Error> {
        let pool_size = self.options.sessions_per_model.max(1);
        let mut sessions = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            let mut builder = Session::builder(&self.environment)?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(self.options.intra_threads.max(1))?
                // Spinning threads would burn the cores that other requests' guests need.
                .with_intra_op_spinning(false)?;
            sessions.push(builder.commit_from_memory(onnx)?);
        }
        let input_types = sessions[0].inputs().iter().map(|outlet| outlet.dtype().tensor_type()).collect();
        let info = |outlets: &[ort::value::Outlet]| -> Vec<TensorInfo> {
            outlets
                .iter()
                .map(|outlet| TensorInfo {
                    name: outlet.name().to_string(),
                    element: outlet.dtype().tensor_type().map_or(ElementType::Other, element_of),
                    shape: outlet.dtype().tensor_shape().map(|shape| shape.to_vec()).unwrap_or_default(),
                })
                .collect()
        };
        let signature = Signature { inputs: info(sessions[0].inputs()), outputs: info(sessions[0].outputs()) };
        let input_names = sessions[0].inputs().iter().map(|outlet| outlet.name().to_string()).collect();
        let output_names = sessions[0].outputs().iter().map(|outlet| outlet.name().to_string()).collect();
        Ok(OrtGraph(Arc::new(OrtModel {
            input_types,
            input_names,
            output_names,
            signature,
            pool: SessionPool::new(sessions),
        })))
    }
}

impl Backend for OrtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Ort
    }

    fn load_graph(&self, onnx: &[u8]) -> Result<Arc<dyn LoadedGraph>, Error> {
        Ok(Arc::new(self.load(onnx)?))
    }

    /// ONNX Runtime keeps one copy of the model per pooled session.
    fn memory_copies(&self) -> u64 {
        self.options.sessions_per_model.max(1) as u64
    }
}

struct OrtModel {
    input_types: Vec<Option<TensorElementType>>,
    input_names: Arc<[String]>,
    output_names: Arc<[String]>,
    signature: Signature,
    pool: SessionPool,
}

/// A loaded model, shared by every instance that runs it.
pub struct OrtGraph(Arc<OrtModel>);

impl LoadedGraph for OrtGraph {
    fn execution(&self) -> Box<dyn Execution> {
        let slots = Slots::new(self.0.input_names.clone(), self.0.output_names.clone());
        Box::new(OrtExecution { model: self.0.clone(), slots })
    }

    fn signature(&self) -> &Signature {
        &self.0.signature
    }
}

pub struct OrtExecution {
    model: Arc<OrtModel>,
    /// Inputs as ONNX Runtime values, converted as they arrive: one copy of the guest's bytes.
    slots: Slots<DynValue>,
}

impl OrtExecution {
    /// Converts a guest tensor for input `index`, checking its element type against the model.
    fn convert(model: &OrtModel, index: usize, tensor: &Tensor) -> Result<DynValue, Error> {
        if let Some(expected) = model.input_types[index]
            && expected != element_type(tensor.ty)?
        {
            let name = &model.input_names[index];
            return Err(Error::Invalid(format!("input {name:?} expects {expected:?}, the guest gave {:?}", tensor.ty)));
        }
        to_ort_value(tensor)
    }

    fn run(model: &OrtModel, slots: &Slots<DynValue>) -> Result<Vec<Tensor>, Error> {
        let values = slots.all_inputs()?;
        let deadline = current_deadline();
        // Past the deadline (no session came free, or the watchdog stopped the run) the host's
        // deadline scope sees the time itself: nothing to mark here.
        let Some(mut session) = model.pool.checkout(deadline) else {
            return Err(Error::Deadline("no ONNX Runtime session became free before the deadline".into()));
        };
        let options = Arc::new(RunOptions::new()?);
        let _watch = deadline.map(|deadline| watchdog().watch(deadline, options.clone()));
        let outputs = session.run_with_options(values, &*options)?;
        model.output_names.iter().map(|name| from_ort_value(&outputs[name.as_str()])).collect()
    }
}

impl Execution for OrtExecution {
    fn held_bytes(&self) -> usize {
        self.slots.held_bytes()
    }
}

impl BackendExecutionContext for OrtExecution {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let model = &self.model;
        Ok(self.slots.set(&id, tensor, |index, tensor| Self::convert(model, index, tensor))?)
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        Ok(self.slots.output(&id)?)
    }

    fn compute(&mut self, inputs: Option<Vec<NamedTensor>>) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let model = &self.model;
        let convert = |index, tensor: &Tensor| Self::convert(model, index, tensor);
        Ok(self.slots.compute(inputs, convert, |slots| Self::run(model, slots))?)
    }
}

fn element_of(ty: TensorElementType) -> ElementType {
    match ty {
        TensorElementType::Bool => ElementType::Bool,
        TensorElementType::Uint8 => ElementType::U8,
        TensorElementType::Int8 => ElementType::I8,
        TensorElementType::Int16 => ElementType::I16,
        TensorElementType::Int32 => ElementType::I32,
        TensorElementType::Int64 => ElementType::I64,
        TensorElementType::Float16 => ElementType::F16,
        TensorElementType::Bfloat16 => ElementType::Bf16,
        TensorElementType::Float32 => ElementType::F32,
        TensorElementType::Float64 => ElementType::F64,
        TensorElementType::String => ElementType::String,
        _ => ElementType::Other,
    }
}

fn element_type(ty: TensorType) -> Result<TensorElementType, Error> {
    Ok(match ty {
        TensorType::Fp32 => TensorElementType::Float32,
        TensorType::Fp64 => TensorElementType::Float64,
        TensorType::I32 => TensorElementType::Int32,
        TensorType::I64 => TensorElementType::Int64,
        TensorType::U8 => TensorElementType::Uint8,
        other => return Err(Error::UnsupportedType(format!("{other:?}"))),
    })
}

fn to_ort_value(tensor: &Tensor) -> Result<DynValue, Error> {
    let shape: Vec<i64> = tensor.dimensions.iter().map(|&d| i64::from(d)).collect();
    let value = match tensor.ty {
        TensorType::Fp32 => OrtTensor::from_array((shape, bytes_to_vec::<f32>(&tensor.data)))?.into_dyn(),
        TensorType::Fp64 => OrtTensor::from_array((shape, bytes_to_vec::<f64>(&tensor.data)))?.into_dyn(),
        TensorType::I32 => OrtTensor::from_array((shape, bytes_to_vec::<i32>(&tensor.data)))?.into_dyn(),
        TensorType::I64 => OrtTensor::from_array((shape, bytes_to_vec::<i64>(&tensor.data)))?.into_dyn(),
        TensorType::U8 => OrtTensor::from_array((shape, tensor.data.clone()))?.into_dyn(),
        other => return Err(Error::UnsupportedType(format!("{other:?}"))),
    };
    Ok(value)
}

fn from_ort_value(value: &DynValue) -> Result<Tensor, Error> {
    fn typed<T: ort::value::PrimitiveTensorElementType + bytemuck::Pod>(
        value: &DynValue,
        ty: TensorType,
    ) -> Result<Tensor, Error> {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        let dimensions = dimensions_u32(shape.iter().copied())?;
        Ok(Tensor::new(dimensions, ty, bytemuck::cast_slice(data).to_vec()))
    }
    match value.dtype().tensor_type() {
        Some(TensorElementType::Float32) => typed::<f32>(value, TensorType::Fp32),
        Some(TensorElementType::Float64) => typed::<f64>(value, TensorType::Fp64),
        Some(TensorElementType::Int32) => typed::<i32>(value, TensorType::I32),
        Some(TensorElementType::Int64) => typed::<i64>(value, TensorType::I64),
        Some(TensorElementType::Uint8) => typed::<u8>(value, TensorType::U8),
        other => Err(Error::UnsupportedType(format!("output of type {other:?}"))),
    }
}

/// Sessions of one model; a run checks one out and gives it back on drop.
struct SessionPool {
    idle: Mutex<Vec<Session>>,
    returned: Condvar,
}

impl SessionPool {
    fn new(sessions: Vec<Session>) -> Self {
        Self { idle: Mutex::new(sessions), returned: Condvar::new() }
    }

    /// A free session, waiting for one at most until `deadline` (`None` past it).
    fn checkout(&self, deadline: Option<Instant>) -> Option<PooledSession<'_>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(session) = idle.pop() {
                return Some(PooledSession { pool: self, session: Some(session) });
            }
            idle = match deadline {
                None => self.returned.wait(idle).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())?;
                    self.returned.wait_timeout(idle, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }
}

struct PooledSession<'p> {
    pool: &'p SessionPool,
    session: Option<Session>,
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("a pooled session is present until drop")
    }
}

impl std::ops::DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("a pooled session is present until drop")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner).push(session);
            self.pool.returned.notify_one();
        }
    }
}

/// Terminates ONNX Runtime runs whose deadline passed: one thread for the process, asleep
/// until the earliest deadline of the runs in progress.
struct Watchdog {
    runs: Mutex<WatchedRuns>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchedRuns {
    next_id: u64,
    runs: Vec<(u64, Instant, Arc<RunOptions>)>,
    /// When the watchdog thread looks next: `None` while it waits for a run to watch.
    wakes_at: Option<Instant>,
}

impl WatchedRuns {
    /// Whether a run due at `deadline` needs the watchdog thread woken: only if it would
    /// otherwise look too late. Runs of one app have the same time limit, so each new run is
    /// due after the one the watchdog already waits for; waking it for every run cost a
    /// sleeping thread's wake-up per inference (benches/RESULTS.md (j)).
    fn wakes_too_late_for(&self, deadline: Instant) -> bool {
        self.wakes_at.is_none_or(|wakes_at| deadline < wakes_at)
    }
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog =
            Box::leak(Box::new(Watchdog { runs: Mutex::default(), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("edgenn-ort-watchdog".into())
            .spawn(move || watchdog.run())
            .expect("the ONNX Runtime watchdog thread starts");
        watchdog
    })
}

impl Watchdog {
    /// Watches one run until the returned guard drops.
    fn watch(&'static self, deadline: Instant, options: Arc<RunOptions>) -> WatchGuard {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let id = runs.next_id;
        runs.next_id += 1;
        runs.runs.push((id, deadline, options));
        if runs.wakes_too_late_for(deadline) {
            self.changed.notify_one();
        }
        WatchGuard { watchdog: self, id }
    }

    fn run(&self) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            runs.runs.retain(|(_, deadline, options)| {
                if *deadline > now {
                    return true;
                }
                if let Err(error) = options.terminate() {
                    tracing::warn!(%error, "cannot terminate an ONNX Runtime run");
                }
                false
            });
            runs.wakes_at = runs.runs.iter().map(|(_, deadline, _)| *deadline).min();
            runs = match runs.wakes_at {
                Some(next) => self.changed.wait_timeout(runs, next - now).unwrap_or_else(PoisonError::into_inner).0,
                None => self.changed.wait(runs).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

struct WatchGuard {
    watchdog: &'static Watchdog,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        // The watchdog is not told: it may wake at this run's deadline for nothing, which
        // costs less than a wake-up now to sleep longer.
        let mut runs = self.watchdog.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.runs.retain(|(id, _, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_watchdog_is_woken_only_for_a_run_due_before_it_looks() {
        let now = Instant::now();
        let mut runs = WatchedRuns::default();
        assert!(runs.wakes_too_late_for(now), "waiting for a first run");
        runs.wakes_at = Some(now + Duration::from_secs(30));
        assert!(!runs.wakes_too_late_for(now + Duration::from_secs(31)), "due after its look");
        assert!(!runs.wakes_too_late_for(now + Duration::from_secs(30)));
        assert!(runs.wakes_too_late_for(now + Duration::from_secs(1)), "a shorter limit than the run it waits for");
    }
}
