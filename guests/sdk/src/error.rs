//! Errors a handler returns with `?`: an [`HttpError`] is a status and a message, answered as
//! `{"error": message}`; a wasi-nn [`NnError`] becomes one by what went wrong.

use crate::Response;
use crate::nn::NnError;

/// An error answer: `status` with the body `{"error": message}`.
///
/// ```
/// use edgenn_guest::{HttpError, Request, Response};
///
/// fn handle(req: Request) -> Result<Response, HttpError> {
///     let text = req.query("text").ok_or_else(|| HttpError::bad_request("query parameter text is required"))?;
///     Ok(Response::text(200, text))
/// }
/// let response: Response = handle(Request::builder().build()).unwrap_or_else(Response::from);
/// assert_eq!(response.status(), 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct HttpError {
    /// The HTTP status, 400..=599.
    pub status: u16,
    /// Why, for the client.
    pub message: String,
    /// Extra response headers (`allow` for a 405, ...).
    pub headers: Vec<(String, String)>,
}

impl HttpError {
    /// An error answer with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(400, message)
    }

    /// 404: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(404, message)
    }

    /// 405 with an `allow` header naming the methods that are.
    pub fn method_not_allowed(allow: &str, message: impl Into<String>) -> HttpError {
        HttpError::new(405, message).with_header("allow", allow)
    }

    /// The same error with a response header added.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpError {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<HttpError> for Response {
    fn from(error: HttpError) -> Response {
        error.headers.into_iter().fold(
            Response::error(error.status, error.message),
            |response, (name, value)| response.with_header(name, value),
        )
    }
}

/// A model that cannot be loaded is 404 (no such model or backend, or not declared by the
/// app), a bad input tensor is 400, a failed inference is 500.
impl From<NnError> for HttpError {
    fn from(error: NnError) -> HttpError {
        let status = match &error {
            NnError::Load { .. } | NnError::Unavailable => 404,
            NnError::Input { .. } => 400,
            _ => 500,
        };
        HttpError::new(status, error.to_string())
    }
}

impl From<NnError> for Response {
    fn from(error: NnError) -> Response {
        HttpError::from(error).into()
    }
}

/// What a handler may return: a [`Response`], or a `Result` whose error becomes one.
pub trait IntoResponse {
    /// The response to write.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<E: Into<Response>> IntoResponse for Result<Response, E> {
    fn into_response(self) -> Response {
        self.unwrap_or_else(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_json_answers() {
        let response = Response::from(HttpError::method_not_allowed("POST", "use POST"));
        assert_eq!(response.status(), 405);
        assert_eq!(response.header("allow"), Some("POST"));
        assert_eq!(response.body(), br#"{"error":"use POST"}"#);
        let load = NnError::Load {
            name: "x".into(),
            errno: Some(8),
            message: "not found".into(),
        };
        assert_eq!(HttpError::from(load).status, 404);
        let input = NnError::Input {
            index: 0,
            message: "short".into(),
        };
        assert_eq!(HttpError::from(input).status, 400);
        let inference = NnError::Inference {
            errno: Some(5),
            message: "failed".into(),
        };
        assert_eq!(Response::from(inference).status(), 500);
        let ok: Result<Response, HttpError> = Ok(Response::text(200, "fine"));
        assert_eq!(ok.into_response().status(), 200);
    }
}
