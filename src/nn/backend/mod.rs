//! Inference backends, one file each. A backend loads ONNX bytes into a [`LoadedGraph`]; a
//! graph starts [`Execution`]s, which are wasmtime-wasi-nn's `BackendExecutionContext` (so the
//! same executions can serve its WIT host) plus what edgenn's host needs to bound them: the
//! host memory they hold for the guest. Every backend honours the request's deadline
//! ([`super::limits::current_deadline`]) in `compute`.

pub mod ort;
pub mod tract;

use wasmtime_wasi_nn::backend::{BackendExecutionContext, Id};

/// A graph loaded by one of edgenn's backends, shared by every instance that runs it.
pub trait LoadedGraph: Send + Sync {
    fn execution(&self) -> Box<dyn Execution>;
}

/// One execution of a [`LoadedGraph`], owned by one guest instance.
pub trait Execution: BackendExecutionContext {
    /// Bytes of host memory this execution holds for the guest: its inputs and outputs.
    fn held_bytes(&self) -> usize;
}

/// The position of an input or output given by index or by name, checked against `names`.
pub(crate) fn index_of(names: &[String], id: &Id, what: &str) -> Result<usize, BackendError> {
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

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use wasmtime_wasi_nn::backend::BackendError;
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

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ort" | "onnxruntime" => Ok(BackendKind::Ort),
            "tract" => Ok(BackendKind::Tract),
            other => Err(format!("unknown backend {other:?} (expected \"ort\" or \"tract\")")),
        }
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
pub(crate) fn check_tensor(tensor: &wasmtime_wasi_nn::Tensor) -> Result<Vec<usize>, BackendError> {
    let dims: Vec<usize> = tensor.dimensions.iter().map(|&d| d as usize).collect();
    let expected = dims
        .iter()
        .try_fold(element_size(tensor.ty), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| backend_error(format!("tensor dimensions {dims:?} overflow")))?;
    if expected != tensor.data.len() {
        return Err(backend_error(format!(
            "tensor of dimensions {dims:?} and type {:?} needs {expected} bytes, got {}",
            tensor.ty,
            tensor.data.len()
        )));
    }
    Ok(dims)
}

/// Backend failures travel to the guest as the wasi-nn `runtime-error` errno; the message is
/// kept for the host's logs.
pub(crate) fn backend_error(message: impl fmt::Display) -> BackendError {
    BackendError::BackendAccess(wasmtime::Error::msg(message.to_string()))
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
        let ok = wasmtime_wasi_nn::Tensor::new(vec![1, 2], TensorType::Fp32, vec![0; 8]);
        assert_eq!(check_tensor(&ok).unwrap(), vec![1, 2]);
        let short = wasmtime_wasi_nn::Tensor::new(vec![1, 2], TensorType::Fp32, vec![0; 7]);
        assert!(check_tensor(&short).is_err());
        let huge = wasmtime_wasi_nn::Tensor::new(vec![u32::MAX; 4], TensorType::Fp64, vec![]);
        assert!(check_tensor(&huge).is_err());
    }

    #[test]
    fn bytes_become_values() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bytes_to_vec::<f32>(&bytes), vec![1.5, -2.0]);
    }
}
