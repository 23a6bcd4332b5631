//! tract-onnx backend: pure Rust, nothing to install. A loaded graph is an optimised
//! `SimplePlan`; `run` takes `&self` and spawns its own state, so any number of inferences of
//! one model run in parallel without a lock.

use super::{BackendKind, backend_error, bytes_to_vec, check_tensor, load_single, read_model_bytes};
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id, NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor as NnTensor};

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
        Ok(TractGraph(Arc::new(TractModel { plan, inputs, outputs })))
    }
}

impl BackendInner for TractBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(&mut self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Graph, BackendError> {
        load_single(builders, target, |onnx| self.load_graph(onnx))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        Some(self)
    }
}

impl BackendFromDir for TractBackend {
    fn load_from_dir(&mut self, dir: &Path, target: ExecutionTarget) -> Result<Graph, BackendError> {
        let onnx = read_model_bytes(dir)?;
        self.load(&[&onnx], target)
    }
}

struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

#[derive(Clone)]
pub struct TractGraph(Arc<TractModel>);

impl TractGraph {
    pub fn execution(&self) -> TractExecution {
        TractExecution { model: self.0.clone(), inputs: vec![None; self.0.inputs.len()], outputs: Vec::new() }
    }

    pub fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }
}

impl BackendGraph for TractGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(self.execution()) as Box<dyn BackendExecutionContext>))
    }
}

pub struct TractExecution {
    model: Arc<TractModel>,
    inputs: Vec<Option<TValue>>,
    outputs: Vec<NnTensor>,
}

fn position(names: &[String], id: &Id, what: &str) -> Result<usize, BackendError> {
    let index = match id {
        Id::Index(i) => *i as usize,
        Id::Name(name) => names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| backend_error(format!("the model has no {what} named {name:?}")))?,
    };
    if index >= names.len() {
        return Err(backend_error(format!("{what} {index} out of range: the model has {}", names.len())));
    }
    Ok(index)
}

impl BackendExecutionContext for TractExecution {
    fn set_input(&mut self, id: Id, tensor: &NnTensor) -> Result<(), BackendError> {
        let index = position(&self.model.inputs, &id, "input")?;
        self.inputs[index] = Some(to_tract(tensor)?.into_tvalue());
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<NnTensor, BackendError> {
        let index = position(&self.model.outputs, &id, "output")?;
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
        let results = self.model.plan.run(values).map_err(|e| backend_error(format!("tract: {e:#}")))?;
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
