//! The Open Inference Protocol's REST routes (KServe v2, as Triton serves them) for the
//! shared models: health, server and model metadata, inference. The protocol itself is
//! [`crate::oip`]; this is its HTTP side. Errors are `{"error": "..."}` (with edgenn's `kind`
//! beside it), as the protocol says.
//!
//! Every model has one version, `1`: the `/versions/1/` forms of the paths are the same
//! resource, any other version is 404.

use super::error::ErrorBody;
use super::{ApiError, HttpState};
use crate::metrics::InferLabels;
use crate::nn::backend::TensorInfo;
use crate::nn::{ModelKey, NnError};
use crate::oip::{self, DataType, InferRequest, InferResponse, OipError};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::time::Instant;

/// The one version every model has.
pub(super) const VERSION: &str = "1";

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}", get(versioned_metadata))
        .route("/v2/models/{model}/versions/{version}/ready", get(versioned_ready))
        .route("/v2/models/{model}/versions/{version}/infer", post(versioned_infer))
}

#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, description = "Server name, version and protocol extensions", body = serde_json::Value)))]
async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "edgenn",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, description = "The server answers", body = serde_json::Value)))]
async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// Ready once the models marked for warm-up are loaded, each on its default backend (see
/// [`crate::apps::Apps::warm_up`]), and the fleet's desired state, if the gateway follows one,
/// is served.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses((status = 200, description = "The models marked for warm-up are loaded", body = serde_json::Value), (status = 503, description = "Still warming up, or a model failed to load", body = serde_json::Value)))]
async fn server_ready(State(state): State<HttpState>) -> Response {
    let ready = state.apps.is_warm() && state.fleet.as_ref().is_none_or(|fleet| fleet.is_converged());
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({ "ready": ready });
    if let Some(fleet) = &state.fleet {
        body["fleet"] =
            json!({ "converged": fleet.is_converged(), "registry_reachable": fleet.is_registry_reachable() });
    }
    (status, Json(body)).into_response()
}

fn check_version(model: &str, version: &str) -> Result<(), ApiError> {
    if version == VERSION {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("model {model:?} has no version {version:?}; it has version {VERSION}")))
    }
}

/// A shared model's graph, loaded off the executor: on its default backend, or on another
/// one where this gateway lacks that.
async fn signature_of(state: &HttpState, model: &str) -> Result<(crate::nn::SharedGraph, Vec<String>), ApiError> {
    let store = state.apps.runtime().models().clone();
    let name = model.to_string();
    let loaded = tokio::task::spawn_blocking(move || {
        let key = ModelKey::shared(&name);
        match store.graph(&key, None) {
            Err(unavailable @ NnError::BackendUnavailable(..)) => store
                .available_backends()
                .into_iter()
                .find_map(|backend| store.graph(&key, Some(backend)).ok())
                .ok_or(unavailable),
            other => other,
        }
    })
    .await
    .map_err(|_| ApiError::Call(crate::apps::CallError::Panicked))?;
    let (graph, _) = loaded.map_err(|error| OipError::from_nn(model, error))?;
    let backends =
        state.apps.runtime().models().available_backends().into_iter().map(|b| b.as_str().to_string()).collect();
    Ok((graph, backends))
}

#[utoipa::path(get, path = "/v2/models/{model}", tag = "v2", params(("model" = String, Path, description = "A shared model")), responses((status = 200, description = "Inputs and outputs read from the graph", body = serde_json::Value), (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn model_metadata(State(state): State<HttpState>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    let (graph, backends) = signature_of(&state, &model).await?;
    let tensors = |infos: &[TensorInfo]| -> Vec<Value> {
        infos
            .iter()
            .map(|info| {
                let datatype = DataType::of_element(info.element).map_or("UNKNOWN", DataType::name);
                json!({ "name": info.name, "datatype": datatype, "shape": info.shape })
            })
            .collect()
    };
    let signature = graph.signature();
    Ok(Json(json!({
        "name": model,
        "versions": [VERSION],
        "platform": "onnx_onnxv1",
        "inputs": tensors(&signature.inputs),
        "outputs": tensors(&signature.outputs),
        "parameters": { "backends": backends },
    })))
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "v2", params(("model" = String, Path), ("version" = String, Path, description = "Always `1`")), responses((status = 200, description = "As `/v2/models/{model}`", body = serde_json::Value), (status = 404, description = "Unknown model or version", body = ErrorBody)))]
async fn versioned_metadata(
    state: State<HttpState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_version(&model, &version)?;
    model_metadata(state, Path(model)).await
}

/// Ready when the model loads on its default backend (it is then in the cache).
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "v2", params(("model" = String, Path)), responses((status = 200, description = "The model loads", body = serde_json::Value), (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn model_ready(State(state): State<HttpState>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    signature_of(&state, &model).await?;
    Ok(Json(json!({ "name": model, "ready": true })))
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "v2", params(("model" = String, Path), ("version" = String, Path)), responses((status = 200, description = "The model loads", body = serde_json::Value), (status = 404, description = "Unknown model or version", body = ErrorBody)))]
async fn versioned_ready(
    state: State<HttpState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_version(&model, &version)?;
    model_ready(state, Path(model)).await
}

#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "v2", params(("model" = String, Path), ("version" = String, Path)), request_body = InferRequest, responses((status = 200, description = "As `/v2/models/{model}/infer`", body = InferResponse), (status = 400, description = "A bad request", body = ErrorBody), (status = 404, description = "Unknown model or version", body = ErrorBody)))]
async fn versioned_infer(
    state: State<HttpState>,
    Path((model, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(error) = check_version(&model, &version) {
        return error.into_response();
    }
    infer(state, Path(model), request).await
}

#[utoipa::path(
    post,
    path = "/v2/models/{model}/infer",
    tag = "v2",
    params(
        ("model" = String, Path, description = "A shared model"),
        ("inference-header-content-length" = Option<usize>, Header, description = "Binary tensor data extension: bytes of JSON before the binary tensors"),
    ),
    request_body(content = InferRequest, description = "JSON, or JSON followed by binary tensors"),
    responses(
        (status = 200, description = "The outputs (binary ones after the JSON, see `inference-header-content-length`)", body = InferResponse),
        (status = 400, description = "A datatype, shape, input or output the model does not have, or not an inference request", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 504, description = "Past the inference deadline", body = ErrorBody),
    )
)]
async fn infer(State(state): State<HttpState>, Path(model): Path<String>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let response = match run_infer(&state, &model, &parts.headers, &parts.extensions, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // Unknown names are not counted: a client could otherwise grow the label set without bound.
    if response.status() != StatusCode::NOT_FOUND || state.apps.runtime().models().has_shared(&model) {
        let metrics = state.apps.runtime().metrics();
        let labels = InferLabels { model, status: response.status().as_u16() };
        metrics.infer_requests.get_or_create(&labels).inc();
        metrics.infer_request_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
    response
}

async fn run_infer(
    state: &HttpState,
    model: &str,
    headers: &HeaderMap,
    extensions: &Extensions,
    body: Body,
) -> Result<Response, ApiError> {
    let header_length = match headers.get(oip::HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::BadRequest(format!("{} must be a byte count", oip::HEADER_LENGTH)))?,
        ),
    };
    let limit = state.limits.max_infer_body_bytes;
    super::refuse_declared_over(headers, limit)?;
    // The body first, at the rate and within the budget every body keeps ([`super::body`]),
    // then an inference slot: a client slow to send holds no slot that other clients need.
    let reading = Instant::now();
    let mut decoder = oip::BodyDecoder::new(header_length, limit);
    let body_hold = state.bodies.read(extensions, body, limit, |chunk| Ok(decoder.push(chunk)?)).await?;
    let read = Instant::now();
    let turn = tokio::time::timeout(state.limits.infer_deadline, state.infer_turns.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Overloaded)?
        .map_err(|_| ApiError::Overloaded)?;
    // The inference's own time starts with its slot, as it did when the slot came first.
    let deadline = Instant::now() + state.limits.infer_deadline;
    let store = state.apps.runtime().models().clone();
    let name = model.to_string();
    let answer = off_executor(move || -> Result<(Bytes, Option<usize>, String), OipError> {
        // Held until the inference ends, even if the client has gone.
        let (_turn, _body_hold) = (turn, body_hold);
        let started = Instant::now();
        let request = decoder.finish()?;
        let decoded = Instant::now();
        let id = request.id.clone();
        let outputs = oip::infer(&store, &name, &request, deadline)?;
        let inferred = Instant::now();
        let (body, json_length) = oip::encode(&name, id, outputs);
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
        let timing = format!(
            "read;dur={:.3}, queue;dur={:.3}, decode;dur={:.3}, infer;dur={:.3}, encode;dur={:.3}",
            ms(reading, read),
            ms(read, started),
            ms(started, decoded),
            ms(decoded, inferred),
            ms(inferred, Instant::now())
        );
        Ok((Bytes::from(body), json_length, timing))
    })
    .await
    .ok_or(ApiError::Call(crate::apps::CallError::Panicked))?;
    let (body, json_length, timing) = answer?;
    let mut response = Response::new(Body::from(body));
    let response_headers = response.headers_mut();
    // Where the time went, as the apps' answers say it: reading the body (with the binary
    // extension that includes parsing its JSON header and copying each input's bytes into its
    // tensor), waiting for an inference slot and handing the executor over (or waiting for a
    // blocking thread), decoding (building
    // the tensors; parsing a body that is all JSON), the inference (inputs, compute, outputs),
    // encoding.
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response_headers.insert(header::HeaderName::from_static("server-timing"), value);
    }
    match json_length {
        Some(length) => {
            response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            response_headers.insert(oip::HEADER_LENGTH, HeaderValue::from(length));
        }
        None => {
            response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(response)
}

/// Runs `work` (decoding and an inference: milliseconds of CPU) off the async executor; None
/// if it panicked. On the gateway's multi-threaded runtime this thread hands its executor
/// duties to another and runs `work` itself (`block_in_place`): the body it just read is in its
/// cache, and the answer is written without waking another thread. A hop to a blocking thread
/// and back costs two wake-ups of a sleeping thread, which on this VM's vCPUs added more than
/// the protocol itself (benches/RESULTS.md (j)). On a current-thread runtime, where
/// `block_in_place` is not allowed, a blocking thread runs it.
async fn off_executor<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok())
    } else {
        tokio::task::spawn_blocking(work).await.ok()
    }
}
