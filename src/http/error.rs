//! The one error type at the HTTP edge: every failure becomes a status code and
//! `{"error": "...", "kind": "..."}`, `kind` being machine-readable (`deadline_exceeded`).

use crate::apps::CallError;
use crate::runtime::RuntimeError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use std::time::Duration;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("request body is larger than this app's limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    BodyTimeout(Duration),
    #[error("the gateway is serving as many requests as it may: retry shortly")]
    Overloaded,
    #[error(transparent)]
    Call(#[from] CallError),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            AppError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Call(CallError::AppBusy { .. }) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Call(CallError::Runtime(error)) => match error {
                RuntimeError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
                // The request made the app need more memory than it may have: too large for it.
                RuntimeError::MemoryLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
                RuntimeError::Response(_) | RuntimeError::OutputTooLarge(_) => StatusCode::BAD_GATEWAY,
                RuntimeError::Trap(_)
                | RuntimeError::Instantiate(_)
                | RuntimeError::Compile(_)
                | RuntimeError::Link(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            AppError::Call(CallError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Call(CallError::Panicked) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable kind of the error, sent as `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::NotFound(_) => "not_found",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::BadRequest(_) => "bad_request",
            AppError::UriTooLong(_) => "uri_too_long",
            AppError::BodyTimeout(_) => "body_timeout",
            AppError::Overloaded => "overloaded",
            AppError::Call(CallError::AppBusy { .. }) => "app_busy",
            AppError::Call(CallError::ShuttingDown) => "shutting_down",
            AppError::Call(CallError::Panicked) => "internal",
            AppError::Call(CallError::Runtime(error)) => match error {
                RuntimeError::DeadlineExceeded(_) => "deadline_exceeded",
                RuntimeError::MemoryLimit(_) => "memory_limit",
                RuntimeError::Response(_) | RuntimeError::OutputTooLarge(_) => "bad_guest_response",
                RuntimeError::Trap(_) => "guest_failed",
                RuntimeError::Instantiate(_) | RuntimeError::Compile(_) | RuntimeError::Link(_) => "internal",
            },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let body = Json(serde_json::json!({ "error": self.to_string(), "kind": self.kind() }));
        let mut response = (status, body).into_response();
        if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_map_to_the_right_status() {
        let deadline = AppError::from(CallError::Runtime(RuntimeError::DeadlineExceeded(Duration::from_millis(5))));
        assert_eq!(deadline.status(), StatusCode::GATEWAY_TIMEOUT);
        let memory = AppError::from(CallError::Runtime(RuntimeError::MemoryLimit(64 << 20)));
        assert_eq!(memory.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(memory.to_string(), "the app exceeded its memory limit of 64 MiB");
        assert_eq!(AppError::PayloadTooLarge(10).status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
