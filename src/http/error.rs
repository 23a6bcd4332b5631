//! The one error type at the HTTP edge: every failure becomes a status code and
//! `{"error": "...", "kind": "..."}`, `kind` being machine-readable (`deadline_exceeded`).
//!
//! A 5xx body says only what failed; the cause chain (a wasm backtrace, a host path) goes to
//! the log, written by [`log_errors`] from the detail the error leaves on the response.

use crate::apps::{CallError, DeployError};
use crate::nn::describe;
use crate::oip::OipError;
use crate::repository::RepositoryError;
use crate::runtime::RuntimeError;
use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// What every error answer's body is (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    error: String,
    /// What went wrong, for a program: `not_found`, `bad_request`, `deadline_exceeded`, ...
    kind: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    BodyTimeout(Duration),
    /// A body whose bytes stopped coming: nothing for this long.
    #[error("the request body stopped arriving: nothing came for {} ms", .0.as_millis())]
    BodyStalled(Duration),
    /// One client address sending as many bodies at once as it may.
    #[error("this client is sending {0} request bodies already: finish one first")]
    TooManyUploads(usize),
    /// An app the fleet serves: it changes through the fleet file, not the admin API.
    #[error("app {0:?} is served from the fleet file: change it there")]
    FleetOwned(String),
    #[error("the gateway is serving as many requests as it may: retry shortly")]
    Overloaded,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the admin API is disabled: start the gateway with --admin-token or EDGENN_ADMIN_TOKEN")]
    AdminDisabled,
    #[error("deploy refused")]
    DeployRefused(#[source] DeployError),
    #[error("storage error")]
    Storage(#[from] std::io::Error),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Infer(#[from] OipError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::BodyTimeout(_) | ApiError::BodyStalled(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyUploads(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::FleetOwned(_) => StatusCode::CONFLICT,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized | ApiError::AdminDisabled => StatusCode::UNAUTHORIZED,
            ApiError::DeployRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Call(CallError::AppBusy { .. }) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Call(CallError::Runtime(error)) => match error {
                RuntimeError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
                // The request made the app need more memory than it may have: too large for it.
                RuntimeError::MemoryLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
                RuntimeError::Response(_)
                | RuntimeError::OutputTooLarge(_)
                | RuntimeError::NoResponse
                | RuntimeError::ErrorResponse(_) => StatusCode::BAD_GATEWAY,
                RuntimeError::Trap(_)
                | RuntimeError::Exit(_)
                | RuntimeError::Instantiate(_)
                | RuntimeError::Compile(_)
                | RuntimeError::Link(_)
                | RuntimeError::NoStart
                | RuntimeError::ComponentImports(_)
                | RuntimeError::NotAProxy(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Call(CallError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Call(CallError::Panicked) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Infer(error) => match error {
                OipError::UnknownModel(_) => StatusCode::NOT_FOUND,
                OipError::BadRequest(_) | OipError::BackendUnavailable { .. } => StatusCode::BAD_REQUEST,
                OipError::OutOfRange(_) => StatusCode::BAD_REQUEST,
                OipError::TooLarge(_) | OipError::TensorTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                OipError::Deadline => StatusCode::GATEWAY_TIMEOUT,
                OipError::Load(..) | OipError::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Repository(error) => match error {
                RepositoryError::UnknownModel(_) => StatusCode::NOT_FOUND,
                RepositoryError::ReadOnly(_) | RepositoryError::NoDataDirectory => StatusCode::CONFLICT,
                RepositoryError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                RepositoryError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The machine-readable kind of the error, sent as `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::BodyTimeout(_) | ApiError::BodyStalled(_) => "body_timeout",
            ApiError::TooManyUploads(_) => "too_many_uploads",
            ApiError::FleetOwned(_) => "fleet_owned",
            ApiError::Overloaded => "overloaded",
            ApiError::Unauthorized => "unauthorized",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::DeployRefused(_) => "deploy_refused",
            ApiError::Storage(_) => "storage",
            ApiError::Call(CallError::AppBusy { .. }) => "app_busy",
            ApiError::Call(CallError::ShuttingDown) => "shutting_down",
            ApiError::Call(CallError::Panicked) => "internal",
            ApiError::Infer(error) => match error {
                OipError::UnknownModel(_) => "not_found",
                OipError::BadRequest(_) => "bad_request",
                OipError::BackendUnavailable { .. } => "backend_unavailable",
                OipError::OutOfRange(_) => "value_out_of_range",
                OipError::TooLarge(_) | OipError::TensorTooLarge { .. } => "payload_too_large",
                OipError::Deadline => "deadline_exceeded",
                OipError::Load(..) => "model_load_failed",
                OipError::Inference(_) => "inference_failed",
            },
            ApiError::Repository(error) => match error {
                RepositoryError::UnknownModel(_) => "not_found",
                RepositoryError::ReadOnly(_) => "read_only",
                RepositoryError::NoDataDirectory => "no_data_directory",
                RepositoryError::Refused { .. } => "model_refused",
                RepositoryError::Io(_) => "storage",
            },
            ApiError::Call(CallError::Runtime(error)) => match error {
                RuntimeError::DeadlineExceeded(_) => "deadline_exceeded",
                RuntimeError::MemoryLimit(_) => "memory_limit",
                RuntimeError::Response(_)
                | RuntimeError::OutputTooLarge(_)
                | RuntimeError::NoResponse
                | RuntimeError::ErrorResponse(_) => "bad_guest_response",
                RuntimeError::Trap(_) | RuntimeError::Exit(_) => "guest_failed",
                RuntimeError::Instantiate(_)
                | RuntimeError::Compile(_)
                | RuntimeError::Link(_)
                | RuntimeError::NoStart
                | RuntimeError::ComponentImports(_)
                | RuntimeError::NotAProxy(_) => "internal",
            },
        }
    }

    /// What the client is told: for a 4xx the whole reason (a refused deploy says why), for a
    /// 5xx only what failed.
    fn message(&self) -> String {
        if self.status().is_server_error() { self.to_string() } else { describe(self) }
    }
}

/// The full cause chain of an error answered with a 5xx, for [`log_errors`].
#[derive(Clone)]
struct ErrorDetail(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.message(), "kind": self.kind() }));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        if status.is_server_error() {
            response.extensions_mut().insert(ErrorDetail(describe(&self)));
        }
        response
    }
}

/// Logs every 5xx the edge answered with its cause chain, once, at the edge.
pub async fn log_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    if let Some(ErrorDetail(detail)) = response.extensions().get::<ErrorDetail>() {
        tracing::warn!(status = response.status().as_u16(), %method, %path, error = %detail, "request failed");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_map_to_the_right_status_and_kind() {
        let deadline = ApiError::from(CallError::Runtime(RuntimeError::DeadlineExceeded(Duration::from_millis(5))));
        assert_eq!((deadline.status(), deadline.kind()), (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"));
        let memory = ApiError::from(CallError::Runtime(RuntimeError::MemoryLimit(64 << 20)));
        assert_eq!((memory.status(), memory.kind()), (StatusCode::PAYLOAD_TOO_LARGE, "memory_limit"));
        assert_eq!(ApiError::PayloadTooLarge(10).status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_5xx_body_keeps_the_cause_for_the_log() {
        let cause: Box<dyn std::error::Error + Send + Sync> = "wasm backtrace: 0x1234 in /host/path".into();
        let error = ApiError::from(CallError::Runtime(RuntimeError::Trap(cause)));
        assert_eq!(error.message(), "the app failed");
        let response = error.into_response();
        let detail = response.extensions().get::<ErrorDetail>().expect("a detail for the log");
        assert!(detail.0.contains("/host/path"), "{}", detail.0);
    }
}
