//! The protocol's JSON and its binary tensor data: datatypes, inputs into wasi-nn tensors,
//! tensors into outputs.

use super::{OipError, Output, bad};
use crate::nn::backend::ElementType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use utoipa::ToSchema;
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::wit::TensorType;

/// `POST /v2/models/{m}/infer`'s JSON.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Vec<RequestOutput>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// Flat or nested, row-major; absent when the tensor is binary (`binary_data_size`).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
}

/// The answer's JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseOutput {
    pub name: String,
    #[schema(value_type = String, example = "FP32")]
    pub datatype: DataType,
    pub shape: Vec<u64>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Vec<Value>>,
}

/// The protocol's tensor datatypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Bool,
    Uint8,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    const ALL: [DataType; 11] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// A model's element type as a datatype; `None` for one the protocol has no name for.
    pub fn of_element(element: ElementType) -> Option<Self> {
        Some(match element {
            ElementType::Bool => DataType::Bool,
            ElementType::U8 => DataType::Uint8,
            ElementType::I8 => DataType::Int8,
            ElementType::I16 => DataType::Int16,
            ElementType::I32 => DataType::Int32,
            ElementType::I64 => DataType::Int64,
            ElementType::F16 => DataType::Fp16,
            ElementType::Bf16 => DataType::Bf16,
            ElementType::F32 => DataType::Fp32,
            ElementType::F64 => DataType::Fp64,
            ElementType::String => DataType::Bytes,
            ElementType::Other => return None,
        })
    }

    pub fn of_tensor(ty: TensorType) -> Self {
        match ty {
            TensorType::Fp16 => DataType::Fp16,
            TensorType::Fp32 => DataType::Fp32,
            TensorType::Fp64 => DataType::Fp64,
            TensorType::Bf16 => DataType::Bf16,
            TensorType::U8 => DataType::Uint8,
            TensorType::I32 => DataType::Int32,
            TensorType::I64 => DataType::Int64,
        }
    }

    /// The wasi-nn tensor type the backends run this datatype as, and its size in bytes.
    fn tensor_type(self) -> Result<(TensorType, usize), OipError> {
        Ok(match self {
            DataType::Uint8 => (TensorType::U8, 1),
            DataType::Int32 => (TensorType::I32, 4),
            DataType::Int64 => (TensorType::I64, 8),
            DataType::Fp32 => (TensorType::Fp32, 4),
            DataType::Fp64 => (TensorType::Fp64, 8),
            DataType::Bytes => return Err(bad("BYTES tensors are not supported: edgenn's models take numbers")),
            other => {
                return Err(bad(format!(
                    "{other} tensors are not supported by edgenn's backends; use FP32, FP64, INT32, INT64 or UINT8"
                )));
            }
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A boolean parameter; absent is false.
pub(super) fn flag(parameters: &Map<String, Value>, name: &str) -> Result<bool, OipError> {
    match parameters.get(name) {
        None => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(bad(format!("parameter {name:?} must be true or false, not {other}"))),
    }
}

/// The number of bytes of binary data `input` declares (`binary_data_size`), if it is binary.
pub(super) fn binary_data_size(input: &RequestInput) -> Result<Option<usize>, OipError> {
    let name = &input.name;
    match (input.parameters.get("binary_data_size"), &input.data) {
        (Some(_), Some(_)) => Err(bad(format!("input {name:?} has both JSON data and binary_data_size"))),
        (Some(length), None) => length
            .as_u64()
            .and_then(|l| usize::try_from(l).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("input {name:?}: binary_data_size must be a byte count"))),
        (None, _) => Ok(None),
    }
}

/// The tensor of one input: its JSON `data`, or `binary`, the bytes its `binary_data_size`
/// declared, as they came after the JSON. `max_bytes` is the request's byte limit: a shape
/// whose elements take more is refused before anything is sized from it.
pub(super) fn input_tensor(
    input: &RequestInput,
    binary: Option<Vec<u8>>,
    max_bytes: usize,
) -> Result<Tensor, OipError> {
    let name = &input.name;
    let datatype = DataType::parse(&input.datatype)
        .ok_or_else(|| bad(format!("input {name:?}: unknown datatype {:?}", input.datatype)))?;
    let (ty, size) = datatype.tensor_type().map_err(|e| bad(format!("input {name:?}: {e}")))?;
    let mut dimensions = Vec::with_capacity(input.shape.len());
    let mut elements: usize = 1;
    for &d in &input.shape {
        let d = u32::try_from(d)
            .map_err(|_| bad(format!("input {name:?}: shape {:?} has a bad dimension", input.shape)))?;
        elements = elements
            .checked_mul(d as usize)
            .ok_or_else(|| bad(format!("input {name:?}: shape {:?} is too large", input.shape)))?;
        dimensions.push(d);
    }
    // In checked arithmetic, before any buffer: a shape is a number a client wrote.
    let bytes = elements.checked_mul(size).filter(|&bytes| bytes <= max_bytes).ok_or_else(|| {
        OipError::TensorTooLarge { input: name.clone(), shape: input.shape.clone(), limit: max_bytes }
    })?;
    let data = match (binary, &input.data) {
        (Some(binary), _) => binary,
        (None, Some(data)) => json_data(name, datatype, data, &dimensions, elements)?,
        (None, None) => return Err(bad(format!("input {name:?} has no data and no binary_data_size"))),
    };
    if data.len() != bytes {
        return Err(bad(format!(
            "input {name:?}: shape {:?} is {elements} elements of {datatype} ({bytes} bytes), but {} bytes were given",
            input.shape,
            data.len()
        )));
    }
    Ok(Tensor::new(dimensions, ty, data))
}

/// JSON data, flat or nested in row-major order, as little-endian bytes of `datatype`. The
/// data must be laid out as the shape says before anything is sized from the shape.
fn json_data(
    name: &str,
    datatype: DataType,
    data: &Value,
    shape: &[u32],
    elements: usize,
) -> Result<Vec<u8>, OipError> {
    let values = scalars(name, data, shape, elements)?;
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for (index, value) in values.into_iter().enumerate() {
        let wrong = || bad(format!("input {name:?}: element {index} ({value}) is not a {datatype} value"));
        match datatype {
            DataType::Fp32 => bytes.extend_from_slice(&(value.as_f64().ok_or_else(wrong)? as f32).to_le_bytes()),
            DataType::Fp64 => bytes.extend_from_slice(&value.as_f64().ok_or_else(wrong)?.to_le_bytes()),
            DataType::Int32 => {
                let v = value.as_i64().and_then(|v| i32::try_from(v).ok()).ok_or_else(wrong)?;
                bytes.extend_from_slice(&v.to_le_bytes())
            }
            DataType::Int64 => bytes.extend_from_slice(&value.as_i64().ok_or_else(wrong)?.to_le_bytes()),
            DataType::Uint8 => bytes.push(value.as_u64().and_then(|v| u8::try_from(v).ok()).ok_or_else(wrong)?),
            _ => unreachable!("tensor_type() admits only the datatypes above"),
        }
    }
    Ok(bytes)
}

/// The elements of JSON `data` in row-major order, in one of the two layouts the protocol
/// allows: a flat array of all `elements`, or arrays nested as deep as the shape with every
/// array as long as its dimension. Anything else (ragged rows, a flat array of the wrong
/// length, nesting deeper or shallower than the shape) says where it went wrong. The vector is
/// sized from the data, which is already parsed, never from the shape.
fn scalars<'a>(name: &str, data: &'a Value, shape: &[u32], elements: usize) -> Result<Vec<&'a Value>, OipError> {
    let Value::Array(items) = data else {
        // A bare scalar: a tensor of one element, shape [] or [1, ...].
        return if elements == 1 {
            Ok(vec![data])
        } else {
            Err(bad(format!("input {name:?}: the shape is {elements} elements, the data is one value")))
        };
    };
    if items.iter().all(|item| !item.is_array()) {
        if items.len() != elements {
            return Err(bad(format!("input {name:?}: the shape is {elements} elements, the data has {}", items.len())));
        }
        return Ok(items.iter().collect());
    }
    let mut values = Vec::new();
    nested(name, data, shape, &mut Vec::new(), &mut values)?;
    Ok(values)
}

/// Walks `data` nested as `shape` says; `at` is the index of `data` within the tensor.
fn nested<'a>(
    name: &str,
    data: &'a Value,
    shape: &[u32],
    at: &mut Vec<usize>,
    into: &mut Vec<&'a Value>,
) -> Result<(), OipError> {
    let place = || if at.is_empty() { "the data".to_string() } else { format!("data{at:?}") };
    match (data, shape.split_first()) {
        (Value::Array(items), Some((&dimension, inner))) => {
            if items.len() != dimension as usize {
                return Err(bad(format!(
                    "input {name:?}: {} has {} items where the shape says {dimension} (rows of a tensor must be \
                     equally long)",
                    place(),
                    items.len()
                )));
            }
            for (index, item) in items.iter().enumerate() {
                at.push(index);
                nested(name, item, inner, at, into)?;
                at.pop();
            }
            Ok(())
        }
        (Value::Array(_), None) => {
            Err(bad(format!("input {name:?}: {} is nested deeper than the shape's {} dimensions", place(), at.len())))
        }
        (_, Some(_)) => Err(bad(format!(
            "input {name:?}: {} is a value where the shape says an array of {} items",
            place(),
            shape[0]
        ))),
        (scalar, None) => {
            into.push(scalar);
            Ok(())
        }
    }
}

/// One output of the answer: JSON `data`, or its bytes appended to `binary`.
pub(super) fn response_output(output: Output, binary: &mut Vec<u8>) -> ResponseOutput {
    let Output { name, tensor, binary: as_binary } = output;
    let datatype = DataType::of_tensor(tensor.ty);
    let shape = tensor.dimensions.iter().map(|&d| u64::from(d)).collect();
    let mut parameters = Map::new();
    let data = if as_binary {
        parameters.insert("binary_data_size".into(), Value::from(tensor.data.len()));
        binary.extend_from_slice(&tensor.data);
        None
    } else {
        Some(json_values(tensor.ty, &tensor.data))
    };
    ResponseOutput { name, datatype, shape, parameters, data }
}

fn json_values(ty: TensorType, data: &[u8]) -> Vec<Value> {
    fn each<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> Value) -> Vec<Value> {
        data.chunks_exact(N).map(|chunk| f(chunk.try_into().expect("chunks of N"))).collect()
    }
    match ty {
        TensorType::Fp32 => each(data, |b| Value::from(f64::from(f32::from_le_bytes(b)))),
        TensorType::Fp64 => each(data, |b| Value::from(f64::from_le_bytes(b))),
        TensorType::I32 => each(data, |b| Value::from(i32::from_le_bytes(b))),
        TensorType::I64 => each(data, |b| Value::from(i64::from_le_bytes(b))),
        TensorType::U8 => data.iter().map(|&b| Value::from(b)).collect(),
        // The backends give no half-precision outputs; as raw 16-bit words if one ever does.
        TensorType::Fp16 | TensorType::Bf16 => each(data, |b| Value::from(u16::from_le_bytes(b))),
    }
}
