//! Inference backends, one file each, behind one trait of ours: a [`Backend`] loads ONNX bytes
//! into a [`LoadedGraph`], shared by every instance; a graph starts [`Execution`]s, one per
//! guest context. An execution is wasmtime-wasi-nn's `BackendExecutionContext` (so the same
//! executions can serve its WIT host too) plus what edgenn's host needs to bound it: the host
//! memory it holds for the guest. Every backend honours the request's deadline
//! ([`super::limits::current_deadline`]) in `compute`.
//!
//! The process's backends are a [`Backends`] registry keyed by [`BackendKind`]; one that could
//! not start (ONNX Runtime without its library) is absent, with the reason. DESIGN.md shows
//! what a third backend takes.

pub mod ort;
pub mod tract;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, Id, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;

/// The backends edgenn ships. Chosen per model (its manifest) or per request (`model@backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// ONNX Runtime through `ort`, loaded from a shared library at run time.
    Ort,
    /// tract-onnx, pure Rust.
    Tract,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Ort, BackendKind::Tract];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Ort => "ort",
            BackendKind::Tract => "tract",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?} (expected \"ort\" or \"tract\")")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ort" | "onnxruntime" => Ok(BackendKind::Ort),
            "tract" => Ok(BackendKind::Tract),
            other => Err(UnknownBackend(other.to_string())),
        }
    }
}

/// An inference backend.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Loads one ONNX model, ready to run on the CPU.
    fn load_graph(&self, onnx: &[u8]) -> Result<Arc<dyn LoadedGraph>, Error>;

    /// How many times its ONNX file's size one loaded graph holds in memory: the model cache
    /// weighs graphs by it.
    fn memory_copies(&self) -> u64 {
        1
    }
}

/// A graph loaded by one of edgenn's backends, shared by every instance that runs it.
pub trait LoadedGraph: Send + Sync {
    fn execution(&self) -> Box<dyn Execution>;

    /// The graph's inputs and outputs as the loaded model declares them.
    fn signature(&self) -> &Signature;
}

/// What a graph takes and gives, read from the model itself (not its manifest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

/// One input or output of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub element: ElementType,
    /// `-1` for a dimension the model leaves open (a batch size, a sequence length).
    pub shape: Vec<i64>,
}

/// An ONNX element type, whether or not wasi-nn can carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
    String,
    /// Anything else (unsigned 16-64, complex, a sequence or a map).
    Other,
}

impl ElementType {
    /// The wasi-nn tensor type of this element type, where wasi-nn has one.
    pub fn tensor_type(self) -> Option<TensorType> {
        Some(match self {
            ElementType::U8 => TensorType::U8,
            ElementType::I32 => TensorType::I32,
            ElementType::I64 => TensorType::I64,
            ElementType::F16 => TensorType::Fp16,
            ElementType::Bf16 => TensorType::Bf16,
            ElementType::F32 => TensorType::Fp32,
            ElementType::F64 => TensorType::Fp64,
            _ => return None,
        })
    }
}

/// One execution of a [`LoadedGraph`], owned by one guest instance.
pub trait Execution: BackendExecutionContext {
    /// Bytes of host memory this execution holds for the guest: its inputs and outputs.
    fn held_bytes(&self) -> usize;
}

/// The backends this process runs, by kind.
#[derive(Default, Clone)]
pub struct Backends {
    available: BTreeMap<BackendKind, Arc<dyn Backend>>,
    /// Backends that could not start, with why.
    unavailable: BTreeMap<BackendKind, String>,
}

impl Backends {
    pub fn register(&mut self, backend: impl Backend + 'static) -> &mut Self {
        self.unavailable.remove(&backend.kind());
        self.available.insert(backend.kind(), Arc::new(backend));
        self
    }

    /// Records that a backend could not start; models on it then fail with the reason.
    pub fn register_unavailable(&mut self, kind: BackendKind, reason: impl Into<String>) -> &mut Self {
        self.available.remove(&kind);
        self.unavailable.insert(kind, reason.into());
        self
    }

    /// The backend of `kind`, or why it is not there.
    pub fn get(&self, kind: BackendKind) -> Result<&Arc<dyn Backend>, String> {
        self.available.get(&kind).ok_or_else(|| {
            self.unavailable.get(&kind).cloned().unwrap_or_else(|| format!("this gateway was built without {kind}"))
        })
    }

    pub fn kinds(&self) -> Vec<BackendKind> {
        self.available.keys().copied().collect()
    }
}

/// What a backend fails with. It reaches the guest as a wasi-nn errno and the log with its
/// chain of causes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ONNX Runtime failed")]
    Ort(#[from] ::ort::Error),
    #[error("tract failed")]
    Tract(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Invalid(String),
    #[error("tensor type {0} is not supported")]
    UnsupportedType(String),
    #[error("not run: {0}")]
    Deadline(String),
    /// A value outside what the model's manifest says an input takes.
    #[error("{0}")]
    OutOfRange(String),
}

impl From<::ort::Error<::ort::session::builder::SessionBuilder>> for Error {
    fn from(error: ::ort::Error<::ort::session::builder::SessionBuilder>) -> Self {
        Error::Ort(error.into())
    }
}

impl From<tract_onnx::prelude::TractError> for Error {
    fn from(error: tract_onnx::prelude::TractError) -> Self {
        Error::Tract(error.into())
    }
}

impl From<Error> for BackendError {
    fn from(error: Error) -> Self {
        match error {
            Error::UnsupportedType(ty) => BackendError::UnsupportedTensorType(ty),
            other => BackendError::BackendAccess(wasmtime::Error::new(other)),
        }
    }
}

fn invalid(message: impl fmt::Display) -> Error {
    Error::Invalid(message.to_string())
}

/// The position of an input or output given by index or by name, checked against `names`.
pub(crate) fn index_of(names: &[String], id: &Id, what: &str) -> Result<usize, Error> {
    let index = match id {
        Id::Index(i) => *i as usize,
        Id::Name(name) => names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| invalid(format!("the model has no {what} named {name:?}")))?,
    };
    if index >= names.len() {
        return Err(invalid(format!("{what} {index} out of range: the model has {}", names.len())));
    }
    Ok(index)
}

/// Inputs set and outputs computed by one execution, with the model's names for them: the
/// bookkeeping every backend shares.
pub(crate) struct Slots<I> {
    input_names: Arc<[String]>,
    output_names: Arc<[String]>,
    /// The backend's own values, converted from the guest's tensors as they arrive.
    pub inputs: Vec<Option<I>>,
    input_bytes: Vec<usize>,
    pub outputs: Vec<Tensor>,
}

impl<I> Slots<I> {
    pub fn new(input_names: Arc<[String]>, output_names: Arc<[String]>) -> Self {
        let n = input_names.len();
        let inputs = (0..n).map(|_| None).collect();
        Self { input_names, output_names, inputs, input_bytes: vec![0; n], outputs: Vec::new() }
    }

    /// Stores the input `id` converted by `convert`.
    pub fn set(
        &mut self,
        id: &Id,
        tensor: &Tensor,
        convert: impl FnOnce(usize, &Tensor) -> Result<I, Error>,
    ) -> Result<(), Error> {
        check_tensor(tensor)?;
        let index = index_of(&self.input_names, id, "input")?;
        self.inputs[index] = Some(convert(index, tensor)?);
        self.input_bytes[index] = tensor.data.len();
        Ok(())
    }

    /// Every input, in the model's order, or which one was not set.
    pub fn all_inputs(&self) -> Result<Vec<(&str, &I)>, Error> {
        self.input_names
            .iter()
            .zip(&self.inputs)
            .map(|(name, value)| {
                value.as_ref().map(|v| (name.as_str(), v)).ok_or_else(|| invalid(format!("input {name:?} was not set")))
            })
            .collect()
    }

    pub fn output(&self, id: &Id) -> Result<Tensor, Error> {
        let index = index_of(&self.output_names, id, "output")?;
        self.outputs.get(index).cloned().ok_or_else(|| invalid(format!("no output {id:?}: has compute run?")))
    }

    pub fn held_bytes(&self) -> usize {
        self.input_bytes.iter().sum::<usize>() + self.outputs.iter().map(|t| t.data.len()).sum::<usize>()
    }

    /// `compute` as both wasi-nn ABIs call it: named inputs (WIT) are set first; with them,
    /// every output is returned by name.
    pub fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
        convert: impl Fn(usize, &Tensor) -> Result<I, Error>,
        run: impl FnOnce(&Self) -> Result<Vec<Tensor>, Error>,
    ) -> Result<Option<Vec<NamedTensor>>, Error> {
        let named = inputs.is_some();
        for input in inputs.into_iter().flatten() {
            self.set(&Id::Name(input.name), &input.tensor, &convert)?;
        }
        self.outputs = run(self)?;
        Ok(named.then(|| {
            self.output_names
                .iter()
                .zip(&self.outputs)
                .map(|(name, tensor)| NamedTensor { name: name.clone(), tensor: tensor.clone() })
                .collect()
        }))
    }
}

/// Size in bytes of one element of a wasi-nn tensor type.
pub(crate) fn element_size(ty: TensorType) -> usize {
    match ty {
        TensorType::Fp16 | TensorType::Bf16 => 2,
        TensorType::Fp32 | TensorType::I32 => 4,
        TensorType::Fp64 | TensorType::I64 => 8,
        TensorType::U8 => 1,
    }
}

/// Checks that a guest tensor's byte length matches its dimensions, so backends can trust it.
pub(crate) fn check_tensor(tensor: &Tensor) -> Result<Vec<usize>, Error> {
    let dims: Vec<usize> = tensor.dimensions.iter().map(|&d| d as usize).collect();
    let expected = dims
        .iter()
        .try_fold(element_size(tensor.ty), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(format!("tensor dimensions {dims:?} overflow")))?;
    if expected != tensor.data.len() {
        return Err(invalid(format!(
            "tensor of dimensions {dims:?} and type {:?} needs {expected} bytes, got {}",
            tensor.ty,
            tensor.data.len()
        )));
    }
    Ok(dims)
}

/// A tensor's dimensions as `u32`, as wasi-nn has them.
pub(crate) fn dimensions_u32(shape: impl IntoIterator<Item = i64>) -> Result<Vec<u32>, Error> {
    shape
        .into_iter()
        .map(|d| u32::try_from(d).map_err(|_| invalid(format!("output dimension {d} does not fit u32"))))
        .collect()
}

/// Copies little-endian tensor bytes into a typed vector (the bytes of a `Vec<u8>` carry no
/// alignment guarantee, so no cast in place).
pub(crate) fn bytes_to_vec<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.as_str().parse::<BackendKind>().unwrap(), kind);
        }
        assert!("cuda".parse::<BackendKind>().is_err());
    }

    #[test]
    fn tensor_byte_length_is_checked() {
        let ok = Tensor::new(vec![1, 2], TensorType::Fp32, vec![0; 8]);
        assert_eq!(check_tensor(&ok).unwrap(), vec![1, 2]);
        let short = Tensor::new(vec![1, 2], TensorType::Fp32, vec![0; 7]);
        assert!(check_tensor(&short).is_err());
        let huge = Tensor::new(vec![u32::MAX; 4], TensorType::Fp64, vec![]);
        assert!(check_tensor(&huge).is_err());
    }

    #[test]
    fn bytes_become_values() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bytes_to_vec::<f32>(&bytes), vec![1.5, -2.0]);
    }

    #[test]
    fn slots_find_inputs_and_outputs_by_index_or_name() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>().into();
        let mut slots: Slots<u8> = Slots::new(names(&["a", "b"]), names(&["y"]));
        let tensor = Tensor::new(vec![2], TensorType::U8, vec![1, 2]);
        slots.set(&Id::Name("b".into()), &tensor, |i, _| Ok(i as u8)).unwrap();
        assert!(slots.all_inputs().is_err(), "input a is not set");
        assert!(slots.set(&Id::Index(2), &tensor, |_, _| Ok(0)).is_err());
        slots.set(&Id::Index(0), &tensor, |i, _| Ok(i as u8)).unwrap();
        assert_eq!(slots.all_inputs().unwrap(), vec![("a", &0), ("b", &1)]);
        let named = slots.compute(Some(Vec::new()), |_, _| Ok(0), |_| Ok(vec![tensor.clone()])).unwrap().unwrap();
        assert_eq!(named[0].name, "y");
        assert_eq!(slots.output(&Id::Name("y".into())).unwrap().data, vec![1, 2]);
        assert_eq!(slots.held_bytes(), 6);
    }

    #[test]
    fn a_missing_backend_says_why() {
        let mut backends = Backends::default();
        backends.register(tract::TractBackend).register_unavailable(BackendKind::Ort, "no library");
        assert_eq!(backends.kinds(), vec![BackendKind::Tract]);
        assert_eq!(backends.get(BackendKind::Ort).err().as_deref(), Some("no library"));
        assert_eq!(backends.get(BackendKind::Tract).unwrap().kind(), BackendKind::Tract);
    }
}
