//! The response a guest writes for the gateway: `Name: value` header lines, an empty line,
//! the body.

use std::io::{self, Write};

use serde::Serialize;

/// An HTTP response from a guest.
///
/// ```
/// use edgenn_guest::Response;
///
/// let ok = Response::json(200, &serde_json::json!({ "answer": 42 }));
/// assert_eq!(ok.status(), 200);
/// assert_eq!(ok.header("content-type"), Some("application/json"));
///
/// let bad = Response::error(400, "k must be between 1 and 50");
/// assert_eq!(bad.body(), br#"{"error":"k must be between 1 and 50"}"#);
///
/// let custom = Response::new(201)
///     .with_header("content-type", "text/csv")
///     .with_header("cache-control", "no-store")
///     .with_body("a,b\n1,2\n");
/// assert_eq!(custom.header("Cache-Control"), Some("no-store"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status` (100..=599; anything else becomes 500).
    pub fn new(status: u16) -> Response {
        Response {
            status: if (100..=599).contains(&status) {
                status
            } else {
                500
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` with `value` serialized as JSON (`content-type: application/json`). If `value`
    /// cannot be serialized (a map with non-string keys, ...), a 500 error instead.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => Response::error(500, format!("cannot serialize the response: {e}")),
        }
    }

    /// `status` with the body `{"error": message}`: how guests answer their own errors.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        let body = serde_json::json!({ "error": message.into() });
        Response::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.to_string())
    }

    /// `status` with a plain-text body (`text/plain; charset=utf-8`).
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into())
    }

    /// Sets header `name` (replacing an earlier value of the same name, case-insensitively).
    /// Line breaks in the name or value are replaced by spaces: they would end the header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        let name = single_line(name.into());
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        self.headers.push((name, single_line(value.into())));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers, in the order set.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Writes the response in the gateway's format: a `status` line, the headers, an empty
    /// line and the body, in one write.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 + self.body.len());
        writeln!(buf, "status: {}", self.status)?;
        for (name, value) in &self.headers {
            // The status is ours to set: a `status` header would contradict it.
            if !name.eq_ignore_ascii_case("status") {
                writeln!(buf, "{name}: {value}")?;
            }
        }
        buf.push(b'\n');
        buf.extend_from_slice(&self.body);
        out.write_all(&buf)
    }
}

fn single_line(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn wire_format() {
        let r = Response::json(404, &serde_json::json!({"a": 1}));
        assert_eq!(
            wire(&r),
            "status: 404\ncontent-type: application/json\n\n{\"a\":1}"
        );
        let r = Response::new(204);
        assert_eq!(wire(&r), "status: 204\n\n");
    }

    #[test]
    fn error_body_is_escaped_json() {
        let r = Response::error(400, "bad \"quote\"\n");
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"], "bad \"quote\"\n");
        assert_eq!(r.status(), 400);
    }

    #[test]
    fn headers_are_single_lines_and_replaced() {
        let r = Response::text(200, "hi")
            .with_header("X-A", "1\r\nstatus: 500")
            .with_header("content-type", "text/html")
            .with_header("Status", "302");
        assert_eq!(r.header("x-a"), Some("1  status: 500"));
        assert_eq!(r.header("Content-Type"), Some("text/html"));
        assert_eq!(
            wire(&r),
            "status: 200\nX-A: 1  status: 500\ncontent-type: text/html\n\nhi"
        );
    }

    #[test]
    fn invalid_status_becomes_500() {
        assert_eq!(Response::new(42).status(), 500);
        assert_eq!(Response::new(600).status(), 500);
        assert_eq!(Response::new(599).status(), 599);
    }

    #[test]
    fn unserializable_json_is_500() {
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 1);
        let r = Response::json(200, &m);
        assert_eq!(r.status(), 500);
    }
}
