//! tract-onnx backend: pure Rust, nothing to install. A loaded graph is an optimised
//! `SimplePlan`; `run` takes `&self` and spawns its own state, so any number of inferences of
//! one model run in parallel without a lock.
//!
//! A tract run cannot be stopped once started. So a run is not started when the request has
//! less time left than the fastest run of that model so far took (it could not finish in
//! time); a run that does start and overruns is answered 504 at the deadline by the gateway
//! while its thread finishes, holding that app's turn (see `apps`).

use super::{
    Backend, BackendKind, ElementType, Error, Execution, LoadedGraph, Signature, Slots, TensorInfo, bytes_to_vec,
    check_tensor, dimensions_u32,
};
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
    pub fn load(&self, onnx: &[u8]) -> Result<TractGraph, Error> {
        let plan = tract_onnx::onnx().model_for_read(&mut &onnx[..])?.into_optimized()?.into_runnable()?;
        let model = plan.model();
        let names = |outlets: &[OutletId]| outlets.iter().map(|o| model.node(o.node).name.clone()).collect();
        let input_names: Arc<[String]> = names(model.input_outlets()?);
        let output_names: Arc<[String]> = names(model.output_outlets()?);
        let info = |outlets: &[OutletId], names: &[String]| -> Result<Vec<TensorInfo>, Error> {
            outlets
                .iter()
                .zip(names)
                .map(|(&outlet, name)| {
                    let fact = model.outlet_fact(outlet)?;
                    Ok(TensorInfo {
                        name: name.clone(),
                        element: element_of(fact.datum_type),
                        // A symbolic dimension (`N`, `batch`) is one the model leaves open.
                        shape: fact.shape.iter().map(|d| d.to_i64().unwrap_or(-1)).collect(),
                    })
                })
                .collect()
        };
        let signature = Signature {
            inputs: info(model.input_outlets()?, &input_names[..])?,
            outputs: info(model.output_outlets()?, &output_names[..])?,
        };
        Ok(TractGraph(Arc::new(TractModel {
            plan,
            input_names,
            output_names,
            signature,
            fastest_run_nanos: AtomicU64::new(NEVER_RUN),
        })))
    }
}

impl Backend for TractBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn load_graph(&self, onnx: &[u8]) -> Result<Arc<dyn LoadedGraph>, Error> {
        Ok(Arc::new(self.load(onnx)?))
    }
}

/// `fastest_run_nanos` of a model that has not run yet: nothing is known of its run time.
const NEVER_RUN: u64 = u64::MAX;

struct TractModel {
    plan: Arc<TypedRunnableModel>,
    input_names: Arc<[String]>,
    output_names: Arc<[String]>,
    signature: Signature,
    /// The fastest run so far: a request with less time left cannot finish one.
    fastest_run_nanos: AtomicU64,
}

impl TractModel {
    /// Refuses to start a run that cannot finish before the request's deadline.
    fn check_time_left(&self) -> Result<(), Error> {
        let fastest = self.fastest_run_nanos.load(Ordering::Relaxed);
        let Some(deadline) = current_deadline().filter(|_| fastest != NEVER_RUN) else {
            return Ok(());
        };
        let fastest = Duration::from_nanos(fastest);
        let left = deadline.saturating_duration_since(Instant::now());
        if left < fastest {
            mark_deadline_exceeded();
            return Err(Error::Deadline(format!(
                "{} ms left before the deadline; a run of this model takes at least {} ms",
                left.as_millis(),
                fastest.as_millis()
            )));
        }
        Ok(())
    }

    fn run(&self, slots: &Slots<TValue>) -> Result<Vec<NnTensor>, Error> {
        let values: TVec<TValue> = slots.all_inputs()?.into_iter().map(|(_, value)| value.clone()).collect();
        self.check_time_left()?;
        let started = Instant::now();
        let results = self.plan.run(values)?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.fastest_run_nanos.fetch_min(took, Ordering::Relaxed);
        results.iter().map(from_tract).collect()
    }
}

/// A loaded model, shared by every instance that runs it.
pub struct TractGraph(Arc<TractModel>);

impl LoadedGraph for TractGraph {
    fn execution(&self) -> Box<dyn Execution> {
        let slots = Slots::new(self.0.input_names.clone(), self.0.output_names.clone());
        Box::new(TractExecution { model: self.0.clone(), slots })
    }

    fn signature(&self) -> &Signature {
        &self.0.signature
    }
}

pub struct TractExecution {
    model: Arc<TractModel>,
    slots: Slots<TValue>,
}

fn convert(_index: usize, tensor: &NnTensor) -> Result<TValue, Error> {
    Ok(to_tract(tensor)?.into_tvalue())
}

impl Execution for TractExecution {
    fn held_bytes(&self) -> usize {
        self.slots.held_bytes()
    }
}

impl BackendExecutionContext for TractExecution {
    fn set_input(&mut self, id: Id, tensor: &NnTensor) -> Result<(), BackendError> {
        Ok(self.slots.set(&id, tensor, convert)?)
    }

    fn get_output(&mut self, id: Id) -> Result<NnTensor, BackendError> {
        Ok(self.slots.output(&id)?)
    }

    fn compute(&mut self, inputs: Option<Vec<NamedTensor>>) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let model = &self.model;
        Ok(self.slots.compute(inputs, convert, |slots| model.run(slots))?)
    }
}

fn element_of(datum: DatumType) -> ElementType {
    match datum {
        DatumType::Bool => ElementType::Bool,
        DatumType::U8 => ElementType::U8,
        DatumType::I8 => ElementType::I8,
        DatumType::I16 => ElementType::I16,
        DatumType::I32 => ElementType::I32,
        DatumType::I64 => ElementType::I64,
        DatumType::F16 => ElementType::F16,
        DatumType::F32 => ElementType::F32,
        DatumType::F64 => ElementType::F64,
        DatumType::String => ElementType::String,
        _ => ElementType::Other,
    }
}

fn to_tract(tensor: &NnTensor) -> Result<Tensor, Error> {
    // One copy of the guest's bytes into a typed vector, moved into the tensor.
    fn typed<T: Datum + bytemuck::Pod>(shape: Vec<usize>, data: &[u8]) -> Result<Tensor, Error> {
        let array = tract_ndarray::ArrayD::from_shape_vec(shape, bytes_to_vec::<T>(data))
            .map_err(|e| Error::Invalid(format!("tensor shape: {e}")))?;
        Ok(array.into_tensor())
    }
    let shape = check_tensor(tensor)?;
    match tensor.ty {
        TensorType::Fp32 => typed::<f32>(shape, &tensor.data),
        TensorType::Fp64 => typed::<f64>(shape, &tensor.data),
        TensorType::I32 => typed::<i32>(shape, &tensor.data),
        TensorType::I64 => typed::<i64>(shape, &tensor.data),
        TensorType::U8 => typed::<u8>(shape, &tensor.data),
        other => Err(Error::UnsupportedType(format!("{other:?}"))),
    }
}

fn from_tract(value: &TValue) -> Result<NnTensor, Error> {
    fn typed<T: Datum + bytemuck::Pod>(value: &TValue, ty: TensorType) -> Result<NnTensor, Error> {
        let data = value.try_as_plain_ram()?.as_slice::<T>()?;
        let dimensions = dimensions_u32(value.shape().iter().map(|&d| d as i64))?;
        Ok(NnTensor::new(dimensions, ty, bytemuck::cast_slice(data).to_vec()))
    }
    match value.datum_type() {
        DatumType::F32 => typed::<f32>(value, TensorType::Fp32),
        DatumType::F64 => typed::<f64>(value, TensorType::Fp64),
        DatumType::I32 => typed::<i32>(value, TensorType::I32),
        DatumType::I64 => typed::<i64>(value, TensorType::I64),
        DatumType::U8 => typed::<u8>(value, TensorType::U8),
        other => Err(Error::UnsupportedType(format!("output of type {other:?}"))),
    }
}
