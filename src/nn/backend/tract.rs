//! tract-onnx backend: pure Rust, nothing to install. A loaded graph is an optimised
//! `SimplePlan`; `run` takes `&self` and spawns its own state, so any number of inferences of
//! one model run in parallel without a lock.
//!
//! A tract run cannot be stopped once started. So a run is not started when the request has
//! less time left than the fastest run of that model so far took (it could not finish in
//! time); a run that does start and overruns is answered 504 at the deadline by the gateway
//! while its thread finishes, holding that app's turn (see `apps`).

use super::{Execution, LoadedGraph, backend_error, bytes_to_vec, check_tensor, index_of};
use crate::nn::limits::{current_deadline, mark_deadline_exceeded};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;
use wasmtime_wasi_nn::Tensor as NnTensor;
use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, Id, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;

#[derive(Clone, Default)]
pub struct TractBackend;

impl TractBackend {
    pub fn load_graph(&self, onnx: &[u8]) -> Result<TractGraph, BackendError> {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(|e| backend_error(format!("tract cannot load the model: {e:#}")))?;
        let model = plan.model();
        let names = |outlets: &[OutletId]| outlets.iter().map(|o| model.node(o.node).name.clone()).collect();
        let inputs = names(model.input_outlets().map_err(backend_error)?);
        let outputs = names(model.output_outlets().map_err(backend_error)?);
        Ok(TractGraph(Arc::new(TractModel { plan, inputs, outputs, fastest_run_nanos: AtomicU64::new(NEVER_RUN) })))
    }
}

/// `fastest_run_nanos` of a model that has not run yet: nothing is known of its run time.
const NEVER_RUN: u64 = u64::MAX;

struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// The fastest run so far: a request with less time left cannot finish one.
    fastest_run_nanos: AtomicU64,
}

#[derive(Clone)]
pub struct TractGraph(Arc<TractModel>);

impl LoadedGraph for TractGraph {
    fn execution(&self) -> Box<dyn Execution> {
        let n = self.0.inputs.len();
        Box::new(TractExecution { model: self.0.clone(), inputs: vec![None; n], input_bytes: vec![0; n], outputs: Vec::new() })
    }
}

pub struct TractExecution {
    model: Arc<TractModel>,
    inputs: Vec<Option<TValue>>,
    input_bytes: Vec<usize>,
    outputs: Vec<NnTensor>,
}

impl TractExecution {
    /// Refuses to start a run that cannot finish before the request's deadline.
    fn check_time_left(&self) -> Result<(), BackendError> {
        let Some(deadline) = current_deadline() else {
            return Ok(());
        };
        let fastest = self.model.fastest_run_nanos.load(Ordering::Relaxed);
        if fastest == NEVER_RUN {
            return Ok(());
        }
        let fastest = Duration::from_nanos(fastest);
        let left = deadline.saturating_duration_since(Instant::now());
        if left < fastest {
            mark_deadline_exceeded();
            return Err(backend_error(format!(
                "{} ms left before the deadline; a run of this model takes at least {} ms",
                left.as_millis(),
                fastest.as_millis()
            )));
        }
        Ok(())
    }
}

impl Execution for TractExecution {
    fn held_bytes(&self) -> usize {
        self.input_bytes.iter().sum::<usize>() + self.outputs.iter().map(|t| t.data.len()).sum::<usize>()
    }
}

impl BackendExecutionContext for TractExecution {
    fn set_input(&mut self, id: Id, tensor: &NnTensor) -> Result<(), BackendError> {
        let index = index_of(&self.model.inputs, &id, "input")?;
        self.inputs[index] = Some(to_tract(tensor)?.into_tvalue());
        self.input_bytes[index] = tensor.data.len();
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<NnTensor, BackendError> {
        let index = index_of(&self.model.outputs, &id, "output")?;
        self.outputs
            .get(index)
            .cloned()
            .ok_or_else(|| backend_error(format!("no output {id:?}: has compute run?")))
    }

    fn compute(&mut self, inputs: Option<Vec<NamedTensor>>) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let named = inputs.is_some();
        for input in inputs.into_iter().flatten() {
            self.set_input(Id::Name(input.name), &input.tensor)?;
        }
        let values = self
            .inputs
            .iter()
            .zip(&self.model.inputs)
            .map(|(value, name)| value.clone().ok_or_else(|| backend_error(format!("input {name:?} was not set"))))
            .collect::<Result<TVec<_>, _>>()?;
        self.check_time_left()?;
        let started = Instant::now();
        let results = self.model.plan.run(values).map_err(|e| backend_error(format!("tract: {e:#}")))?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.model.fastest_run_nanos.fetch_min(took, Ordering::Relaxed);
        if current_deadline().is_some_and(|deadline| Instant::now() >= deadline) {
            mark_deadline_exceeded();
        }
        self.outputs = results.iter().map(|value| from_tract(value)).collect::<Result<_, _>>()?;
        Ok(named.then(|| {
            self.model
                .outputs
                .iter()
                .zip(&self.outputs)
                .map(|(name, tensor)| NamedTensor { name: name.clone(), tensor: tensor.clone() })
                .collect()
        }))
    }
}

fn to_tract(tensor: &NnTensor) -> Result<Tensor, BackendError> {
    // One copy of the guest's bytes into a typed vector, moved into the tensor.
    fn typed<T: Datum + bytemuck::Pod>(shape: Vec<usize>, data: &[u8]) -> Result<Tensor, BackendError> {
        let array = tract_ndarray::ArrayD::from_shape_vec(shape, bytes_to_vec::<T>(data)).map_err(backend_error)?;
        Ok(array.into_tensor())
    }
    let shape = check_tensor(tensor)?;
    match tensor.ty {
        TensorType::Fp32 => typed::<f32>(shape, &tensor.data),
        TensorType::Fp64 => typed::<f64>(shape, &tensor.data),
        TensorType::I32 => typed::<i32>(shape, &tensor.data),
        TensorType::I64 => typed::<i64>(shape, &tensor.data),
        TensorType::U8 => typed::<u8>(shape, &tensor.data),
        other => Err(BackendError::UnsupportedTensorType(format!("{other:?}"))),
    }
}

fn from_tract(value: &TValue) -> Result<NnTensor, BackendError> {
    fn typed<T: Datum + bytemuck::Pod>(value: &TValue, ty: TensorType) -> Result<NnTensor, BackendError> {
        let data = value.try_as_plain_ram().and_then(|plain| plain.as_slice::<T>()).map_err(backend_error)?;
        let dimensions = value
            .shape()
            .iter()
            .map(|&d| u32::try_from(d).map_err(|_| backend_error(format!("output dimension {d} does not fit u32"))))
            .collect::<Result<_, _>>()?;
        Ok(NnTensor::new(dimensions, ty, bytemuck::cast_slice(data).to_vec()))
    }
    match value.datum_type() {
        DatumType::F32 => typed::<f32>(value, TensorType::Fp32),
        DatumType::F64 => typed::<f64>(value, TensorType::Fp64),
        DatumType::I32 => typed::<i32>(value, TensorType::I32),
        DatumType::I64 => typed::<i64>(value, TensorType::I64),
        DatumType::U8 => typed::<u8>(value, TensorType::U8),
        other => Err(BackendError::UnsupportedTensorType(format!("output of type {other:?}"))),
    }
}
