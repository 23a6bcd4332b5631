//! HTTP edge: routes, request -> guest request, guest response -> HTTP response.

pub mod admin;
pub mod error;

use crate::apps::{App, Apps};
use crate::runtime::wagi::GuestRequest;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
pub use error::AppError;
use crate::metrics::RequestLabels;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct HttpState {
    pub apps: Arc<Apps>,
    pub admin: Option<Arc<admin::Admin>>,
}

pub fn router(apps: Arc<Apps>, web_demo: Option<PathBuf>, admin: Option<Arc<admin::Admin>>) -> Router {
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
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/apps", get(list_apps))
        .route("/apps/{name}", any(app_root))
        .route("/apps/{name}/{*rest}", any(app_path))
        .fallback(any(by_route))
        .layer(CatchPanicLayer::custom(|_panic| {
            let body = Json(serde_json::json!({ "error": "internal error" }));
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(HttpState { apps, admin })
}

async fn index(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "edgenn",
        "version": env!("CARGO_PKG_VERSION"),
        "apps": state.apps.list(),
        "endpoints": ["/v1/classify", "/v1/predict", "/v1/models", "/v1/apps", "/apps/{name}/...", "/healthz"],
    }))
}

async fn metrics(State(state): State<HttpState>) -> Response {
    // Refreshes the cache gauges before rendering.
    let _ = state.apps.runtime().models().stats();
    let text = state.apps.runtime().metrics().render();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn list_models(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let models = state.apps.runtime().models();
    Json(serde_json::json!({ "models": models.list(), "cache": models.stats() }))
}

async fn list_apps(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "apps": state.apps.list() }))
}

async fn app_root(State(state): State<HttpState>, Path(name): Path<String>, request: Request) -> Result<Response, AppError> {
    by_name(&state, &name, "/".to_string(), request).await
}

async fn app_path(
    State(state): State<HttpState>,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, AppError> {
    by_name(&state, &name, format!("/{rest}"), request).await
}

/// `/apps/<name>/...`: every app is served here, besides its own routes.
async fn by_name(state: &HttpState, name: &str, path_info: String, request: Request) -> Result<Response, AppError> {
    let app = state.apps.get(name).ok_or_else(|| AppError::NotFound(format!("unknown app {name:?}")))?;
    dispatch(state, app, format!("/apps/{name}"), path_info, request).await
}

/// Extra routes declared by apps (`/v1/classify`), matched exactly or as a prefix.
async fn by_route(State(state): State<HttpState>, request: Request) -> Result<Response, AppError> {
    let path = request.uri().path().to_string();
    let mut route = path.as_str();
    loop {
        if let Some(app) = state.apps.by_route(route) {
            let path_info = match &path[route.len()..] {
                "" => "/".to_string(),
                rest => rest.to_string(),
            };
            return dispatch(&state, app, route.to_string(), path_info, request).await;
        }
        match route.rfind('/') {
            Some(cut) if cut > 0 => route = &route[..cut],
            _ => return Err(AppError::NotFound(format!("no route for {path}"))),
        }
    }
}

/// Runs the request in the app and counts it, whatever the outcome.
async fn dispatch(
    state: &HttpState,
    app: Arc<App>,
    script_name: String,
    path_info: String,
    request: Request,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let name = app.manifest.name.clone();
    let response = call_app(state, app, script_name, path_info, request).await.unwrap_or_else(IntoResponse::into_response);
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
) -> Result<Response, AppError> {
    let limit = app.max_body_bytes();
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(AppError::PayloadTooLarge(limit));
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            AppError::PayloadTooLarge(limit)
        } else {
            AppError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    let guest_request = GuestRequest {
        method: parts.method.to_string(),
        script_name,
        path_info,
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: headers_of(&parts.headers),
        body,
    };
    let run = state.apps.call(app, guest_request).await?;
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
    let timing = format!(
        "sandbox;dur={:.3}, app;dur={:.3}",
        run.setup.as_secs_f64() * 1e3,
        run.total.as_secs_f64() * 1e3
    );
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert(HeaderName::from_static("server-timing"), value);
    }
    Ok(response)
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
