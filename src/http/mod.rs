//! HTTP edge: routes, request -> guest request, guest response -> HTTP response.
//!
//! What an anonymous client can cost the gateway is bounded here: connections and requests in
//! flight (beyond them: 503 with `Retry-After`, see [`HttpLimits`]), connections and bodies
//! still arriving per client address, the time to send headers and the rate of bodies (408),
//! the bytes all bodies hold at once, the length of the URI (414) and of each app's body (413).
//! A body is read ([`body`]) before its request takes an app's turn or an inference slot, so a
//! client that is slow to send holds nothing other clients need.

pub mod admin;
pub mod body;
pub mod clients;
pub mod error;
mod openapi;
mod repository;
pub mod serve;
#[cfg(test)]
mod tests;
pub mod v2;

use crate::apps::{App, Apps};
use crate::fleet::Fleet;
use crate::metrics::RequestLabels;
use crate::repository::ModelRepository;
use crate::runtime::wagi::GuestRequest;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
pub use error::ApiError;
use error::ErrorBody;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

/// What one client may cost the gateway at the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time for a client to send a request's headers; then the connection is closed.
    pub header_read_timeout: Duration,
    /// Time for a client to send an app or `/v2` request's whole body (408 beyond it).
    pub body_read_timeout: Duration,
    /// Longest wait between two reads of an app or `/v2` request's body (408 beyond it): the
    /// rate a body must keep, as nginx's `client_body_timeout`.
    pub body_idle_timeout: Duration,
    /// App and `/v2` bodies arriving at once from one client address; beyond it, 429.
    pub max_bodies_per_client: usize,
    /// Bytes all app and `/v2` bodies being read or held for their requests may take at once;
    /// beyond it, 503.
    pub max_buffered_body_bytes: usize,
    /// Connections open at once from one client address; beyond it, new ones are closed.
    pub max_connections_per_client: usize,
    /// Time for an admin upload's whole body.
    pub upload_read_timeout: Duration,
    /// Requests being served at once, over all apps and endpoints; beyond it, 503 at once.
    pub max_requests_in_flight: usize,
    /// Connections open at once; beyond it new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// Longest request URI (path and query); beyond it, 414.
    pub max_uri_bytes: usize,
    /// Largest `/v2` inference request body (JSON and binary tensors); beyond it, 413.
    pub max_infer_body_bytes: usize,
    /// Time a `/v2` inference may take, from its body's arrival; beyond it, 504.
    pub infer_deadline: Duration,
    /// `/v2` inferences decoding or running at once; more wait for a turn (with their bodies
    /// read) for at most `infer_deadline`, then get 503.
    pub max_infers_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(10),
            max_bodies_per_client: 8,
            // As much as 16 inferences of the largest `/v2` body held before: no more memory
            // than when the inference slots bounded the bodies.
            max_buffered_body_bytes: 1 << 30,
            max_connections_per_client: 256,
            upload_read_timeout: Duration::from_secs(300),
            max_requests_in_flight: 1024,
            max_connections: 4096,
            max_uri_bytes: 8 << 10,
            max_infer_body_bytes: 64 << 20,
            infer_deadline: Duration::from_secs(30),
            max_infers_in_flight: 16,
        }
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub apps: Arc<Apps>,
    pub repository: Arc<ModelRepository>,
    /// The desired state the gateway follows, if any: readiness waits for it.
    pub fleet: Option<Arc<Fleet>>,
    pub admin: Option<Arc<admin::Admin>>,
    pub limits: Arc<HttpLimits>,
    /// Turns for `/v2` inferences ([`HttpLimits::max_infers_in_flight`]).
    pub infer_turns: Arc<Semaphore>,
    /// How app and `/v2` bodies are read.
    pub bodies: Arc<body::BodyGate>,
}

/// Answers 414 for an over-long URI and 503 beyond the requests in flight, before any routing.
async fn admission(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if request.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > gate.max_uri_bytes {
        return ApiError::UriTooLong(gate.max_uri_bytes).into_response();
    }
    let Ok(_permit) = gate.in_flight.clone().try_acquire_owned() else {
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

struct Gate {
    in_flight: Arc<Semaphore>,
    max_uri_bytes: usize,
}

pub fn router(
    apps: Arc<Apps>,
    repository: Arc<ModelRepository>,
    fleet: Option<Arc<Fleet>>,
    web_demo: Option<PathBuf>,
    admin: Option<Arc<admin::Admin>>,
    limits: HttpLimits,
) -> Router {
    let gate = Arc::new(Gate {
        in_flight: Arc::new(Semaphore::new(limits.max_requests_in_flight)),
        max_uri_bytes: limits.max_uri_bytes,
    });
    let router = match web_demo {
        // The demo page at `/`, its assets at `/demo/*`; no build step.
        Some(dir) => Router::new()
            .route_service("/", ServeFile::new(dir.join("index.html")))
            .nest_service("/demo", ServeDir::new(dir)),
        None => Router::new().route("/", get(index)),
    };
    let router = match &admin {
        Some(admin) => router.merge(admin::router(admin.clone())),
        None => router,
    };
    router
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/apps", get(list_apps))
        .merge(v2::router())
        .route("/apps/{name}", any(app_root))
        .route("/apps/{name}/", any(app_root_slash))
        .route("/apps/{name}/{*rest}", any(app_path))
        .fallback(any(by_app_route))
        .layer(CatchPanicLayer::custom(|_panic| {
            let body = Json(serde_json::json!({ "error": "internal error" }));
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }))
        .layer(middleware::from_fn_with_state(gate, admission))
        .layer(middleware::from_fn(error::log_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(HttpState {
            apps,
            repository,
            fleet,
            admin,
            infer_turns: Arc::new(Semaphore::new(limits.max_infers_in_flight.max(1))),
            bodies: Arc::new(body::BodyGate::new(&limits)),
            limits: Arc::new(limits),
        })
}

#[utoipa::path(get, path = "/healthz", tag = "gateway", responses((status = 200, description = "The gateway answers", body = serde_json::Value)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/", tag = "gateway", responses((status = 200, description = "The gateway, its apps and endpoints (the demo page instead when it is served)", body = serde_json::Value)))]
async fn index(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "edgenn",
        "version": env!("CARGO_PKG_VERSION"),
        "apps": state.apps.list(),
        "endpoints": ["/v1/classify", "/v1/predict", "/v1/models", "/v1/apps", "/apps/{name}/...", "/v2", "/healthz"],
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "gateway", responses((status = 200, description = "Prometheus metrics, OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<HttpState>) -> Response {
    // Refreshes the cache gauges before rendering.
    let _ = state.apps.runtime().models().stats();
    let text = state.apps.runtime().metrics().render();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

#[utoipa::path(get, path = "/v1/models", tag = "v1", responses((status = 200, description = "Shared models, backends and cache statistics", body = serde_json::Value)))]
async fn list_models(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let models = state.apps.runtime().models();
    Json(serde_json::json!({ "models": models.list(), "cache": models.stats() }))
}

#[utoipa::path(get, path = "/v1/apps", tag = "v1", responses((status = 200, description = "Deployed apps, their routes and limits", body = serde_json::Value)))]
async fn list_apps(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "apps": state.apps.list() }))
}

#[utoipa::path(method(get, post, put, delete, patch), path = "/apps/{name}", tag = "apps", params(("name" = String, Path, description = "A deployed app")), responses((status = 200, description = "What the app answers"), (status = 404, description = "Unknown app", body = ErrorBody), (status = 413, description = "Body over the app's limit or the app past its memory", body = ErrorBody), (status = 429, description = "The app is busy", body = ErrorBody), (status = 504, description = "The app ran past its deadline", body = ErrorBody)))]
async fn app_root(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    by_name(&state, &name, "/".to_string(), request).await
}

/// `/apps/<name>/`: the app's root too, as `/apps/<name>` is (the path below it is `/`).
#[utoipa::path(method(get, post, put, delete, patch), path = "/apps/{name}/", tag = "apps", params(("name" = String, Path, description = "A deployed app")), responses((status = 200, description = "What the app answers, as for `/apps/{name}`"), (status = 404, description = "Unknown app", body = ErrorBody)))]
async fn app_root_slash(state: State<HttpState>, name: Path<String>, request: Request) -> Result<Response, ApiError> {
    app_root(state, name, request).await
}

#[utoipa::path(method(get, post, put, delete, patch), path = "/apps/{name}/{rest}", tag = "apps", params(("name" = String, Path, description = "A deployed app"), ("rest" = String, Path, description = "The path below the app")), responses((status = 200, description = "What the app answers"), (status = 404, description = "Unknown app", body = ErrorBody)))]
async fn app_path(
    State(state): State<HttpState>,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    by_name(&state, &name, format!("/{rest}"), request).await
}

/// `/apps/<name>/...`: every app is served here, besides its own routes.
async fn by_name(state: &HttpState, name: &str, path_info: String, request: Request) -> Result<Response, ApiError> {
    let app = state.apps.get(name).ok_or_else(|| ApiError::NotFound(format!("unknown app {name:?}")))?;
    dispatch(state, app, format!("/apps/{name}"), path_info, request).await
}

/// Extra routes declared by apps (`/v1/classify`), matched exactly or as a segment prefix.
async fn by_app_route(State(state): State<HttpState>, request: Request) -> Result<Response, ApiError> {
    let path = request.uri().path().to_string();
    let Some((app, route_len)) = state.apps.route_for(&path) else {
        return Err(ApiError::NotFound("no app or endpoint serves this path".to_string()));
    };
    let path_info = match &path[route_len..] {
        "" => "/".to_string(),
        rest => rest.to_string(),
    };
    dispatch(&state, app, path[..route_len].to_string(), path_info, request).await
}

/// Runs the request in the app and counts it, whatever the outcome.
async fn dispatch(
    state: &HttpState,
    app: Arc<App>,
    script_name: String,
    path_info: String,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let name = app.manifest.name.clone();
    let id = next_request_id();
    let mut response = call_app(state, app, script_name, path_info, request, id.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    let metrics = state.apps.runtime().metrics();
    let labels = RequestLabels { app: name, status: response.status().as_u16() };
    metrics.requests.get_or_create(&labels).inc();
    metrics.request_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn call_app(
    state: &HttpState,
    app: Arc<App>,
    script_name: String,
    path_info: String,
    request: Request,
    id: String,
) -> Result<Response, ApiError> {
    let limit = app.max_body_bytes();
    let (parts, body) = request.into_parts();
    refuse_declared_over(&parts.headers, limit)?;
    // The body first, at the rate and within the budget every body keeps, then the app's turn:
    // a client slow to send holds none of the app's turns.
    let (body, _body_hold) = state.bodies.collect(&parts.extensions, body, limit).await?;
    let turn = app.take_turn().await?;
    let guest_request = GuestRequest {
        method: parts.method.to_string(),
        script_name,
        path_info,
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: headers_of(&parts.headers),
        body,
        id,
    };
    let run = state.apps.call(app, turn, guest_request).await?;
    let guest = run.response;
    let mut response = Response::new(Body::from(guest.body));
    *response.status_mut() = StatusCode::from_u16(guest.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&guest.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    for (name, value) in &guest.headers {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) else {
            continue;
        };
        if !is_hop_by_hop(&name) {
            headers.append(name, value);
        }
    }
    let timing =
        format!("sandbox;dur={:.3}, app;dur={:.3}", run.setup.as_secs_f64() * 1e3, run.total.as_secs_f64() * 1e3);
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert(HeaderName::from_static("server-timing"), value);
    }
    Ok(response)
}

/// The gateway's id for an app request, unique in this process: the `x-request-id` of its
/// answer and the `request` field of its log records. Made here, never taken from the client,
/// so that a record names the request that made it.
fn next_request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("{:016x}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn headers_of(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| *name != header::AUTHORIZATION && *name != header::COOKIE)
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    [header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::UPGRADE].contains(name)
}

/// 413 at once for a body whose declared length is over `limit`, before anything is read.
fn refuse_declared_over(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(())
}

/// The whole body, at most `limit` bytes (413 beyond), within `timeout` (408 beyond).
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<bytes::Bytes, ApiError> {
    tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?
        .map_err(|e| {
            if is_length_limit(&e) {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
