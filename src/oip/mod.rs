//! The Open Inference Protocol (KServe v2) over the shared models: the tensors of an inference
//! request, as JSON or with the binary tensor data extension, run on the same shared graphs,
//! sessions and metrics as the guests' wasi-nn calls ([`crate::nn::ModelStore`]).
//!
//! This module is the protocol without HTTP: [`decode`] an inference request into tensors,
//! [`infer`] them on a model (blocking: call it off the async executor), [`encode`] the
//! answer. The routes are in [`crate::http::v2`]. A model bundled with one app is not
//! reachable here: only shared models have a name a client can give.

mod codec;

pub use codec::{DataType, InferRequest, InferResponse, RequestInput, RequestOutput, ResponseOutput};

use crate::nn::backend::{BackendKind, Signature, TensorInfo};
use crate::nn::limits::DeadlineScope;
use crate::nn::{ModelKey, ModelStore, NnError, describe};
use serde_json::Value;
use std::time::Instant;
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, Id};

/// The header of the binary tensor data extension: the length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Why an inference request was not answered. Each is a client's mistake (4xx) except
/// [`OipError::Inference`] and [`OipError::Load`].
#[derive(Debug, thiserror::Error)]
pub enum OipError {
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("model {model:?} cannot run on {backend}: {why}")]
    BackendUnavailable { model: String, backend: BackendKind, why: String },
    #[error("model {0:?} could not be loaded")]
    Load(String, #[source] NnError),
    /// The same words as the gateway's other 413s (`ApiError::PayloadTooLarge`).
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// A shape whose elements take more bytes than the request may have: refused before any
    /// buffer is sized from it.
    #[error("input {input:?}: shape {shape:?} takes more than the limit of {limit} bytes")]
    TensorTooLarge { input: String, shape: Vec<i64>, limit: usize },
    /// A value the model cannot take (a token id beyond its vocabulary): the client's error,
    /// found before the backend sees it, so that every backend answers it alike.
    #[error("{0}")]
    OutOfRange(String),
    #[error("the inference did not finish before the deadline")]
    Deadline,
    #[error("the inference failed")]
    Inference(#[source] BackendError),
}

impl OipError {
    /// Why the shared model `model` could not be had from the store, as the protocol says it.
    pub fn from_nn(model: &str, error: NnError) -> Self {
        match error {
            NnError::UnknownModel(_) => OipError::UnknownModel(model.to_string()),
            NnError::BackendUnavailable(backend, why) => {
                OipError::BackendUnavailable { model: model.to_string(), backend, why }
            }
            other => OipError::Load(model.to_string(), other),
        }
    }
}

fn bad(message: impl Into<String>) -> OipError {
    OipError::BadRequest(message.into())
}

/// One decoded input: its tensor, checked against its datatype and shape.
#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub tensor: Tensor,
}

/// An inference request as tensors, with what the client asked of the answer.
#[derive(Debug)]
pub struct Decoded {
    pub id: Option<String>,
    pub backend: Option<BackendKind>,
    pub inputs: Vec<Input>,
    /// The outputs asked for by name, each with whether it is wanted as binary data; empty:
    /// all of the model's outputs.
    pub outputs: Vec<(String, bool)>,
    /// Outputs not named in `outputs` are sent as binary data (`binary_data_output`).
    pub binary_by_default: bool,
}

/// Parses a whole request body: all JSON, or (`header_length`, from [`HEADER_LENGTH`]) that
/// many bytes of JSON followed by the inputs' binary data in the order the inputs are listed.
/// `limit` is the request's byte limit: no input's tensor may take more.
pub fn decode(body: &[u8], header_length: Option<usize>, limit: usize) -> Result<Decoded, OipError> {
    whole(body, header_length, limit)?.into_decoded()
}

/// The JSON part of a whole body and its binary data: the sizes the inputs declare are
/// checked against what is there.
fn whole(body: &[u8], header_length: Option<usize>, limit: usize) -> Result<BinaryInputs, OipError> {
    let (json, binary) = match header_length {
        Some(length) if length > body.len() => {
            return Err(bad(format!("{HEADER_LENGTH} is {length} but the body has only {} bytes", body.len())));
        }
        Some(length) => body.split_at(length),
        None => (body, &[][..]),
    };
    let mut inputs = BinaryInputs::declared_by(json, binary.len(), limit, |declared| {
        bad(format!("the inputs declare {declared} bytes of binary data; the body has {} after its JSON", binary.len()))
    })?;
    inputs.fill(binary);
    Ok(inputs)
}

/// The largest JSON part parsed as soon as it has arrived, on the async executor: a header
/// of names, shapes and sizes is a few hundred bytes. A larger one is kept with the rest of the
/// body and parsed in [`BodyDecoder::finish`], off the executor.
pub const STREAMED_HEADER_MAX: usize = 64 * 1024;

/// A request body decoded as it arrives. With the binary tensor data extension the JSON part
/// (if at most [`STREAMED_HEADER_MAX`]) is parsed as soon as it is in, and each input's binary
/// data is then copied from the network's buffers straight into its own tensor: one copy of a
/// 600 KB image where collecting the body first made two. A body that is all JSON is kept
/// whole and parsed by [`BodyDecoder::finish`], which is CPU work for the caller to run off the
/// executor (150 528 decimal numbers take milliseconds).
#[derive(Debug)]
pub struct BodyDecoder {
    header_length: Option<usize>,
    limit: usize,
    received: usize,
    state: Body,
}

#[derive(Debug)]
enum Body {
    /// Every byte so far: the whole body, or the JSON part still arriving.
    Buffered(Vec<u8>),
    /// The JSON part parsed; the binary data filling its inputs in turn.
    Streaming(BinaryInputs),
}

impl BodyDecoder {
    /// A decoder for a body of at most `limit` bytes: more, or binary inputs declaring more,
    /// is [`OipError::TooLarge`].
    pub fn new(header_length: Option<usize>, limit: usize) -> Self {
        BodyDecoder { header_length, limit, received: 0, state: Body::Buffered(Vec::new()) }
    }

    /// Takes the next bytes of the body.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), OipError> {
        self.received = self.received.saturating_add(chunk.len());
        if self.received > self.limit {
            return Err(OipError::TooLarge(self.limit));
        }
        if let Body::Buffered(buffer) = &mut self.state {
            match self.header_length {
                Some(length) if length <= STREAMED_HEADER_MAX => {
                    // Until the JSON part is in, the buffer holds less than `length`.
                    let (head, rest) = chunk.split_at((length - buffer.len()).min(chunk.len()));
                    buffer.extend_from_slice(head);
                    chunk = rest;
                    if buffer.len() < length {
                        return Ok(());
                    }
                    let limit = self.limit;
                    let inputs =
                        BinaryInputs::declared_by(buffer, limit - length, limit, |_| OipError::TooLarge(limit))?;
                    self.state = Body::Streaming(inputs);
                }
                _ => {
                    buffer.extend_from_slice(chunk);
                    return Ok(());
                }
            }
        }
        if let Body::Streaming(inputs) = &mut self.state {
            inputs.fill(chunk);
        }
        Ok(())
    }

    /// The request, once the whole body has been pushed. Blocking for a body that is all JSON:
    /// call it off the async executor.
    pub fn finish(self) -> Result<Decoded, OipError> {
        match self.state {
            Body::Streaming(inputs) => inputs.into_decoded(),
            Body::Buffered(body) => decode(&body, self.header_length, self.limit),
        }
    }
}

/// The parsed JSON part of a request and the binary data of its inputs as it arrives.
#[derive(Debug)]
struct BinaryInputs {
    request: InferRequest,
    /// For each input in order: the bytes it declared, and those received (`None`: JSON data).
    data: Vec<Option<(usize, Vec<u8>)>>,
    /// The first input whose binary data is not all in.
    filling: usize,
    /// The most bytes one input's tensor may take: the request's limit.
    max_tensor_bytes: usize,
    /// Bytes past the last input's data.
    unclaimed: usize,
}

impl BinaryInputs {
    /// Parses the JSON part. The inputs' binary data may add up to at most `budget` bytes, the
    /// most that can still come: each input's buffer is allocated at once, so a size a client
    /// declares is never taken on trust beyond that (`over_budget` says why, given the total).
    /// No input's tensor may take more than `max_tensor_bytes`.
    fn declared_by(
        json: &[u8],
        budget: usize,
        max_tensor_bytes: usize,
        over_budget: impl Fn(usize) -> OipError,
    ) -> Result<Self, OipError> {
        let request: InferRequest =
            serde_json::from_slice(json).map_err(|e| bad(format!("the body is not an inference request: {e}")))?;
        let sizes = request.inputs.iter().map(codec::binary_data_size).collect::<Result<Vec<_>, _>>()?;
        let declared = sizes.iter().flatten().fold(0usize, |sum, &size| sum.saturating_add(size));
        if declared > budget {
            return Err(over_budget(declared));
        }
        let data = sizes.into_iter().map(|size| size.map(|size| (size, Vec::with_capacity(size)))).collect();
        let mut inputs = BinaryInputs { request, data, filling: 0, max_tensor_bytes, unclaimed: 0 };
        inputs.skip_filled();
        Ok(inputs)
    }

    fn skip_filled(&mut self) {
        while let Some(slot) = self.data.get(self.filling)
            && slot.as_ref().is_none_or(|(size, bytes)| bytes.len() == *size)
        {
            self.filling += 1;
        }
    }

    fn fill(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let Some(Some((size, bytes))) = self.data.get_mut(self.filling) else {
                self.unclaimed += chunk.len();
                return;
            };
            let (mine, rest) = chunk.split_at((*size - bytes.len()).min(chunk.len()));
            bytes.extend_from_slice(mine);
            chunk = rest;
            self.skip_filled();
        }
    }

    fn into_decoded(self) -> Result<Decoded, OipError> {
        let BinaryInputs { request, data, unclaimed, max_tensor_bytes, .. } = self;
        let backend = match request.parameters.get("backend") {
            None => None,
            Some(Value::String(name)) => Some(name.parse::<BackendKind>().map_err(|e| bad(e.to_string()))?),
            Some(other) => return Err(bad(format!("parameter \"backend\" must be a string, not {other}"))),
        };
        if request.inputs.is_empty() {
            return Err(bad("the request has no inputs"));
        }
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (input, binary) in request.inputs.into_iter().zip(data) {
            if inputs.iter().any(|seen: &Input| seen.name == input.name) {
                return Err(bad(format!("input {:?} is given twice", input.name)));
            }
            if let Some((size, bytes)) = &binary
                && bytes.len() < *size
            {
                return Err(bad(format!(
                    "input {:?} declares {size} bytes of binary data; the body has {} for it",
                    input.name,
                    bytes.len()
                )));
            }
            let tensor = codec::input_tensor(&input, binary.map(|(_, bytes)| bytes), max_tensor_bytes)?;
            inputs.push(Input { name: input.name, tensor });
        }
        if unclaimed > 0 {
            return Err(bad(format!("the body has {unclaimed} bytes of binary data that no input claims")));
        }
        let binary_by_default = codec::flag(&request.parameters, "binary_data_output")?;
        let mut outputs = Vec::with_capacity(request.outputs.len());
        for output in request.outputs {
            let binary = match output.parameters.get("binary_data") {
                None => binary_by_default,
                Some(_) => codec::flag(&output.parameters, "binary_data")?,
            };
            outputs.push((output.name, binary));
        }
        Ok(Decoded { id: request.id, backend, inputs, outputs, binary_by_default })
    }
}

/// One output of an answer, as the backend gave it.
#[derive(Debug)]
pub struct Output {
    pub name: String,
    pub tensor: Tensor,
    pub binary: bool,
}

/// Runs `request` on the shared model `model` until `deadline`. Blocking.
pub fn infer(store: &ModelStore, model: &str, request: &Decoded, deadline: Instant) -> Result<Vec<Output>, OipError> {
    let (graph, backend) =
        store.graph(&ModelKey::shared(model), request.backend).map_err(|error| OipError::from_nn(model, error))?;
    let signature = graph.signature();
    check_inputs(signature, &request.inputs)?;
    let wanted = wanted_outputs(signature, request)?;

    let scope = DeadlineScope::enter(deadline);
    let mut execution = graph.execution();
    for input in &request.inputs {
        execution.set_input(Id::Name(input.name.clone()), &input.tensor).map_err(|e| match out_of_range(&e) {
            Some(why) => OipError::OutOfRange(why),
            None => bad(format!("input {:?}: {}", input.name, describe(&e))),
        })?;
    }
    let computed = execution.compute(None);
    if scope.exceeded() {
        return Err(OipError::Deadline);
    }
    computed.map_err(OipError::Inference)?;
    tracing::debug!(model, %backend, "v2 inference");
    wanted
        .into_iter()
        .map(|(name, binary)| {
            let tensor = execution.get_output(Id::Name(name.clone())).map_err(OipError::Inference)?;
            Ok(Output { name, tensor, binary })
        })
        .collect()
}

/// Why the model refused an input's values, if that is why `error` happened.
fn out_of_range(error: &BackendError) -> Option<String> {
    match error {
        BackendError::BackendAccess(inner) => match inner.downcast_ref::<crate::nn::backend::Error>() {
            Some(crate::nn::backend::Error::OutOfRange(why)) => Some(why.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Every input the model takes is given, with its datatype and a shape it accepts; no other.
fn check_inputs(signature: &Signature, inputs: &[Input]) -> Result<(), OipError> {
    let names = |infos: &[TensorInfo]| infos.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
    for input in inputs {
        let Some(info) = signature.inputs.iter().find(|info| info.name == input.name) else {
            return Err(bad(format!(
                "the model has no input {:?}; its inputs: {}",
                input.name,
                names(&signature.inputs)
            )));
        };
        let given = DataType::of_tensor(input.tensor.ty);
        if let Some(expected) = DataType::of_element(info.element)
            && expected != given
        {
            return Err(bad(format!("input {:?} takes {expected}, not {given}", input.name)));
        }
        let shape: Vec<i64> = input.tensor.dimensions.iter().map(|&d| i64::from(d)).collect();
        let fits = shape.len() == info.shape.len() && shape.iter().zip(&info.shape).all(|(&d, &m)| m < 0 || d == m);
        if !fits && !info.shape.is_empty() {
            return Err(bad(format!("input {:?} has shape {:?}; the model takes {:?}", input.name, shape, info.shape)));
        }
    }
    if let Some(missing) = signature.inputs.iter().find(|info| !inputs.iter().any(|i| i.name == info.name)) {
        return Err(bad(format!("input {:?} is missing", missing.name)));
    }
    Ok(())
}

fn wanted_outputs(signature: &Signature, request: &Decoded) -> Result<Vec<(String, bool)>, OipError> {
    if request.outputs.is_empty() {
        return Ok(signature.outputs.iter().map(|o| (o.name.clone(), request.binary_by_default)).collect());
    }
    for (name, _) in &request.outputs {
        if !signature.outputs.iter().any(|o| &o.name == name) {
            let known = signature.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(bad(format!("the model has no output {name:?}; its outputs: {known}")));
        }
    }
    Ok(request.outputs.clone())
}

/// The answer's body, and the length of its JSON part when binary outputs follow it.
pub fn encode(model: &str, id: Option<String>, outputs: Vec<Output>) -> (Vec<u8>, Option<usize>) {
    let mut binary = Vec::new();
    let outputs = outputs.into_iter().map(|output| codec::response_output(output, &mut binary)).collect();
    let response = InferResponse { model_name: model.to_string(), model_version: "1".into(), id, outputs };
    let mut body = serde_json::to_vec(&response).expect("a response serialises");
    if binary.is_empty() {
        return (body, None);
    }
    let json_length = body.len();
    body.extend_from_slice(&binary);
    (body, Some(json_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request's byte limit the gateway starts with.
    const LIMIT: usize = 64 << 20;

    fn json(body: Value) -> Vec<u8> {
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn json_inputs_flat_or_nested_become_the_same_tensor() {
        let flat = json(serde_json::json!({"inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.5]}]}));
        let nested = json(serde_json::json!({"inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1.0, 2.0], [3.0, 4.5]]}]}));
        let (flat, nested) = (decode(&flat, None, LIMIT).unwrap(), decode(&nested, None, LIMIT).unwrap());
        assert_eq!(flat.inputs[0].tensor.data, nested.inputs[0].tensor.data);
        assert_eq!(flat.inputs[0].tensor.dimensions, [2, 2]);
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&flat.inputs[0].tensor.data);
        assert_eq!(values, [1.0, 2.0, 3.0, 4.5]);
    }

    #[test]
    fn json_numbers_keep_their_exact_value_for_their_datatype() {
        let body = json(serde_json::json!({"inputs": [
            {"name": "big", "shape": [2], "datatype": "INT64", "data": [9_007_199_254_740_993i64, -1]},
            {"name": "f", "shape": [1, 2], "datatype": "FP32", "data": [[3, 0.5]]},
            {"name": "u", "shape": [2], "datatype": "UINT8", "data": [0, 255]}]}));
        let decoded = decode(&body, None, LIMIT).unwrap();
        let big: Vec<i64> = bytemuck::pod_collect_to_vec(&decoded.inputs[0].tensor.data);
        assert_eq!(big, [9_007_199_254_740_993, -1]);
        let f: Vec<f32> = bytemuck::pod_collect_to_vec(&decoded.inputs[1].tensor.data);
        assert_eq!(f, [3.0, 0.5]);
        assert_eq!(decoded.inputs[2].tensor.data, [0, 255]);
        let fraction =
            json(serde_json::json!({"inputs": [{"name": "i", "shape": [1], "datatype": "INT32", "data": [1.5]}]}));
        assert!(decode(&fraction, None, LIMIT).unwrap_err().to_string().contains("(1.5) is not a INT32 value"));
    }

    #[test]
    fn binary_inputs_are_taken_in_order_and_must_add_up() {
        let header = json(serde_json::json!({
            "inputs": [
                {"name": "a", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
                {"name": "b", "shape": [1], "datatype": "INT64", "data": [7]},
                {"name": "c", "shape": [3], "datatype": "UINT8", "parameters": {"binary_data_size": 3}}],
            "parameters": {"binary_data_output": true, "backend": "tract"}}));
        let mut body = header.clone();
        body.extend_from_slice(bytemuck::cast_slice(&[5i32, -6]));
        body.extend_from_slice(&[1, 2, 3]);
        let decoded = decode(&body, Some(header.len()), LIMIT).unwrap();
        assert_eq!(decoded.inputs[0].tensor.data, bytemuck::cast_slice::<i32, u8>(&[5, -6]));
        assert_eq!(decoded.inputs[1].tensor.data, 7i64.to_le_bytes());
        assert_eq!(decoded.inputs[2].tensor.data, [1, 2, 3]);
        assert!(decoded.binary_by_default);
        assert_eq!(decoded.backend, Some(BackendKind::Tract));

        let mut extra = body.clone();
        extra.push(0);
        assert!(decode(&extra, Some(header.len()), LIMIT).unwrap_err().to_string().contains("no input claims"));
        assert!(decode(&body[..body.len() - 1], Some(header.len()), LIMIT).is_err());
        assert!(decode(&body, Some(body.len() + 1), LIMIT).is_err());
    }

    #[test]
    fn a_body_decoded_as_it_arrives_is_the_body_decoded_whole() {
        let header = json(serde_json::json!({
            "inputs": [
                {"name": "a", "shape": [3], "datatype": "INT32", "parameters": {"binary_data_size": 12}},
                {"name": "e", "shape": [0], "datatype": "UINT8", "parameters": {"binary_data_size": 0}},
                {"name": "b", "shape": [1], "datatype": "FP64", "data": [0.5]},
                {"name": "c", "shape": [5], "datatype": "UINT8", "parameters": {"binary_data_size": 5}}]}));
        let mut body = header.clone();
        body.extend_from_slice(bytemuck::cast_slice(&[1i32, -2, 3]));
        body.extend_from_slice(&[9, 8, 7, 6, 5]);
        let whole = decode(&body, Some(header.len()), LIMIT).unwrap();
        // Every way of cutting the body into chunks: in the header, at an input's edge, inside one.
        for chunk in [1, 2, 7, header.len() - 1, header.len(), header.len() + 1, header.len() + 12, body.len()] {
            let mut decoder = BodyDecoder::new(Some(header.len()), body.len());
            body.chunks(chunk).try_for_each(|c| decoder.push(c)).unwrap();
            let streamed = decoder.finish().unwrap();
            for (s, w) in streamed.inputs.iter().zip(&whole.inputs) {
                assert_eq!(
                    (&s.name, &s.tensor.data, &s.tensor.dimensions),
                    (&w.name, &w.tensor.data, &w.tensor.dimensions)
                );
            }
            assert_eq!(streamed.inputs.len(), 4);
        }
        assert_eq!(whole.inputs[0].tensor.data, bytemuck::cast_slice::<i32, u8>(&[1, -2, 3]));
        assert_eq!(whole.inputs[3].tensor.data, [9, 8, 7, 6, 5]);

        // Short by one byte, or one byte over: the same errors as a whole body.
        let mut short = BodyDecoder::new(Some(header.len()), usize::MAX);
        short.push(&body[..body.len() - 1]).unwrap();
        assert!(short.finish().unwrap_err().to_string().contains("declares 5 bytes of binary data; the body has 4"));
        let mut long = BodyDecoder::new(Some(header.len()), usize::MAX);
        body.chunks(100).chain([&[0u8][..]]).try_for_each(|c| long.push(c)).unwrap();
        assert!(long.finish().unwrap_err().to_string().contains("1 bytes of binary data that no input claims"));
    }

    #[test]
    fn a_body_may_not_be_or_declare_more_than_the_limit() {
        let header = json(serde_json::json!({"inputs": [
            {"name": "a", "shape": [1000000], "datatype": "UINT8", "parameters": {"binary_data_size": 1000000}}]}));
        // Declared beyond the limit: refused when the header is in, before any buffer is made.
        let mut decoder = BodyDecoder::new(Some(header.len()), header.len() + 999_999);
        assert!(matches!(decoder.push(&header), Err(OipError::TooLarge(_))));
        // Declared beyond what a whole body holds: a bad request, not an allocation.
        let huge = json(serde_json::json!({"inputs": [
            {"name": "a", "shape": [1], "datatype": "UINT8", "parameters": {"binary_data_size": u64::MAX}}]}));
        let error = decode(&huge, Some(huge.len()), LIMIT).unwrap_err().to_string();
        assert!(error.contains("the body has 0 after its JSON"), "{error}");
        // More bytes than the limit, whatever they are.
        let mut decoder = BodyDecoder::new(None, 10);
        decoder.push(b"{\"inputs\"").unwrap();
        assert!(matches!(decoder.push(b": []}"), Err(OipError::TooLarge(10))));
    }

    #[test]
    fn json_data_may_nest_and_an_element_that_is_not_its_datatype_is_named() {
        let input = |datatype: &str, data: Value| {
            let shape = [2, 1, 2];
            json(serde_json::json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}))
        };
        // Nested as the shape says; integers where floats go.
        let decoded = decode(&input("FP64", serde_json::json!([[[1, 2.5]], [[-3, 4e2]]])), None, LIMIT).unwrap();
        assert_eq!(bytemuck::pod_collect_to_vec::<u8, f64>(&decoded.inputs[0].tensor.data), [1.0, 2.5, -3.0, 400.0]);
        // Ragged rows, or nesting other than the shape's, are refused even when the count adds up.
        for (data, shown) in [
            (serde_json::json!([[[1, 2.5]], [[-3], [4e2]]]), "data[1] has 2 items where the shape says 1"),
            (serde_json::json!([[[1, 2, 3]], [[4]]]), "data[0, 0] has 3 items where the shape says 2"),
            (serde_json::json!([[5], [[3, 4]]]), "data[0, 0] is a value where the shape says an array of 2"),
            (serde_json::json!([[[[1], [2]]], [[3, 4]]]), "data[0, 0, 0] is nested deeper"),
            (serde_json::json!([[1, 2, 3, 4]]), "the data has 1 items where the shape says 2"),
            (serde_json::json!(7), "the data is one value"),
        ] {
            let error = decode(&input("FP64", data.clone()), None, LIMIT).unwrap_err().to_string();
            assert!(error.contains(shown), "{data}: {error}");
        }
        let decoded = decode(&input("UINT8", serde_json::json!([0, 1, 2, 255])), None, LIMIT).unwrap();
        assert_eq!(decoded.inputs[0].tensor.data, [0, 1, 2, 255]);
        for (datatype, data, shown) in [
            ("FP32", serde_json::json!([1, "2", 3, 4]), "element 1 (\"2\")"),
            ("FP32", serde_json::json!([1, 2, true, 4]), "element 2 (true)"),
            ("INT32", serde_json::json!([1, 2, 3, null]), "element 3 (null)"),
            ("INT64", serde_json::json!([1, {"a": 1}, 3, 4]), "element 1 ({\"a\":1})"),
            ("INT64", serde_json::json!([1, 2, 3, u64::MAX]), "element 3 (18446744073709551615)"),
            ("UINT8", serde_json::json!([1, 2, -3, 4]), "element 2 (-3)"),
            ("UINT8", serde_json::json!([1, 2, 3, 256]), "element 3 (256)"),
        ] {
            let error = decode(&input(datatype, data), None, LIMIT).unwrap_err().to_string();
            assert!(error.contains(shown) && error.contains(datatype), "{error}");
        }
        let error = decode(&input("FP32", serde_json::json!([1, 2, 3])), None, LIMIT).unwrap_err().to_string();
        assert!(error.contains("the data has 3"), "{error}");
    }

    #[test]
    fn a_shape_is_checked_against_the_limit_before_anything_is_sized_from_it() {
        // 2^45 elements of FP64: 256 TiB, from 60 bytes of JSON. Once, this aborted the process.
        let body = json(serde_json::json!({"inputs": [
            {"name": "x", "shape": [4194304, 8388608], "datatype": "FP64", "data": [1]}]}));
        let error = decode(&body, None, LIMIT).unwrap_err();
        assert!(matches!(error, OipError::TensorTooLarge { limit: LIMIT, .. }), "{error}");
        // Within the limit in elements but not in bytes: still refused.
        let body = json(serde_json::json!({"inputs": [
            {"name": "x", "shape": [LIMIT / 4 + 1], "datatype": "FP32", "data": [1]}]}));
        assert!(matches!(decode(&body, None, LIMIT), Err(OipError::TensorTooLarge { .. })));
        // Dimensions whose product overflows usize, and a binary input with such a shape.
        let body = json(serde_json::json!({"inputs": [
            {"name": "x", "shape": [u32::MAX, u32::MAX, u32::MAX], "datatype": "UINT8", "data": [1]}]}));
        assert!(decode(&body, None, LIMIT).unwrap_err().to_string().contains("too large"));
        let header = json(serde_json::json!({"inputs": [
            {"name": "x", "shape": [1 << 30, 1 << 30], "datatype": "INT64", "parameters": {"binary_data_size": 8}}]}));
        let mut body = header.clone();
        body.extend_from_slice(&[0; 8]);
        assert!(matches!(decode(&body, Some(header.len()), LIMIT), Err(OipError::TensorTooLarge { .. })));
        // A scalar tensor, given bare or in an array.
        for data in [serde_json::json!(3), serde_json::json!([3])] {
            let body =
                json(serde_json::json!({"inputs": [{"name": "x", "shape": [], "datatype": "INT32", "data": data}]}));
            assert_eq!(decode(&body, None, LIMIT).unwrap().inputs[0].tensor.data, 3i32.to_le_bytes());
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            (
                serde_json::json!({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}),
                "3 elements",
            ),
            (serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}), "BYTES"),
            (serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]}), "FP99"),
            (serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [300]}]}), "UINT8"),
            (serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": ["1"]}]}), "INT32"),
            (serde_json::json!({"inputs": [{"name": "x", "shape": [-1], "datatype": "INT32", "data": [1]}]}), "shape"),
            (serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32"}]}), "no data"),
            (serde_json::json!({"inputs": []}), "no inputs"),
            (serde_json::json!({"model": "x"}), "not an inference request"),
            (
                serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}],
                                "parameters": {"backend": "cuda"}}),
                "cuda",
            ),
        ];
        for (body, expected) in cases {
            let error = decode(&json(body.clone()), None, LIMIT).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn outputs_are_json_or_binary_as_asked() {
        let outputs = vec![
            Output {
                name: "p".into(),
                tensor: Tensor::new(
                    vec![2],
                    wasmtime_wasi_nn::wit::TensorType::Fp32,
                    bytemuck::cast_slice(&[0.5f32, 0.25]).to_vec(),
                ),
                binary: false,
            },
            Output {
                name: "q".into(),
                tensor: Tensor::new(vec![1], wasmtime_wasi_nn::wit::TensorType::I64, 9i64.to_le_bytes().to_vec()),
                binary: true,
            },
        ];
        let (body, json_length) = encode("m", Some("r1".into()), outputs);
        let json_length = json_length.expect("a binary output follows the JSON");
        let header: Value = serde_json::from_slice(&body[..json_length]).unwrap();
        assert_eq!(header["model_name"], "m");
        assert_eq!(header["id"], "r1");
        assert_eq!(header["outputs"][0]["data"], serde_json::json!([0.5, 0.25]));
        assert_eq!(header["outputs"][0]["datatype"], "FP32");
        assert_eq!(header["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert!(header["outputs"][1].get("data").is_none());
        assert_eq!(&body[json_length..], 9i64.to_le_bytes());
    }
}

/// Properties of the decoder over bodies a client could send: it never panics, never makes a
/// tensor larger than the request's limit, and decodes a body the same whatever its chunks.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    /// JSON data nested a few levels deep, of numbers, strings, booleans and nulls.
    fn data() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            (0u8..=255).prop_map(Value::from),
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| prop::collection::vec(inner, 0..8).prop_map(Value::Array))
    }

    fn shape() -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(prop_oneof![0i64..6, Just(-1), Just(1 << 31), Just(i64::MAX), any::<i64>()], 0..5)
    }

    fn datatype() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["FP32", "FP64", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "FP99"])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(body in prop::collection::vec(any::<u8>(), 0..512),
                                                      header in prop::option::of(0usize..600)) {
            let _ = decode(&body, header, LIMIT);
        }

        #[test]
        fn a_decoded_tensor_is_what_its_shape_says_and_within_the_limit(
            shape in shape(), datatype in datatype(), data in data()) {
            let body = serde_json::to_vec(&serde_json::json!(
                {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]})).unwrap();
            if let Ok(decoded) = decode(&body, None, LIMIT) {
                let tensor = &decoded.inputs[0].tensor;
                let elements: usize = tensor.dimensions.iter().map(|&d| d as usize).product();
                let size = match datatype { "UINT8" => 1, "FP32" | "INT32" => 4, _ => 8 };
                prop_assert_eq!(tensor.data.len(), elements * size);
                prop_assert!(tensor.data.len() <= LIMIT);
            }
        }

        #[test]
        fn binary_bodies_decode_alike_in_any_chunks(values in prop::collection::vec(any::<i32>(), 0..64),
                                                    declared in 0usize..300, chunk in 1usize..64) {
            let header = serde_json::to_vec(&serde_json::json!({"inputs": [
                {"name": "x", "shape": [values.len()], "datatype": "INT32",
                 "parameters": {"binary_data_size": declared}}]})).unwrap();
            let mut body = header.clone();
            body.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            let whole = decode(&body, Some(header.len()), LIMIT).map(|d| d.inputs[0].tensor.data.clone());
            let mut decoder = BodyDecoder::new(Some(header.len()), LIMIT);
            let streamed = body.chunks(chunk).try_for_each(|c| decoder.push(c))
                .and_then(|()| decoder.finish()).map(|d| d.inputs[0].tensor.data.clone());
            prop_assert_eq!(whole.as_ref().ok(), streamed.as_ref().ok());
            prop_assert_eq!(whole.is_ok(), declared == values.len() * 4);
        }
    }
}
