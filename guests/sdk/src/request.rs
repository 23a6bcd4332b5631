//! The request as the gateway passes it (WAGI/CGI style): body on stdin, the rest in
//! environment variables.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;

use serde::de::DeserializeOwned;

use crate::multipart::{self, MultipartError, Part};

/// Prefix of the environment variables that carry the app's `[config]` values.
const CONFIG_PREFIX: &str = "EDGENN_CONFIG_";
/// Never reserve more than this up front from an announced `CONTENT_LENGTH` (the gateway caps
/// bodies anyway; this only bounds the initial allocation).
const MAX_PREALLOCATION: usize = 64 << 20;

/// An HTTP request handed to a guest.
///
/// Built by [`crate::run`]; build one yourself with [`Request::from_cgi_vars`] to unit-test a
/// handler natively.
#[derive(Debug, Clone, Default)]
pub struct Request {
    method: String,
    path: String,
    query_string: String,
    content_type: Option<String>,
    /// Lower-case names with `-` (`user-agent`), in the order received.
    headers: Vec<(String, String)>,
    /// Keys as they appear after `EDGENN_CONFIG_` (upper-case, `_`). A `BTreeMap`, not a
    /// `HashMap`: std seeds a `HashMap`'s hasher from `random_get`, a host call on every
    /// request, and in a component the call that sets up the preview1 adapter's state. A
    /// handful of config keys needs no hashing, and a request needs no random bytes.
    config: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    /// Reads the request of this instance: environment variables and the body from stdin.
    pub fn from_env() -> std::io::Result<Request> {
        // vars_os: a non-UTF-8 value must not make the guest panic (std::env::vars would).
        let vars: Vec<(String, String)> = std::env::vars_os()
            .map(|(k, v)| (lossy(k), lossy(v)))
            .collect();
        let announced = vars
            .iter()
            .find(|(k, _)| k == "CONTENT_LENGTH")
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = Vec::with_capacity(announced.min(MAX_PREALLOCATION));
        std::io::stdin().lock().read_to_end(&mut body)?;
        Ok(Request::from_cgi_vars(vars, body))
    }

    /// Builds a request from CGI/WAGI variables (`REQUEST_METHOD`, `PATH_INFO`,
    /// `QUERY_STRING`, `CONTENT_TYPE`, `HTTP_*`, `EDGENN_CONFIG_*`) and a body. Other variables
    /// are ignored.
    ///
    /// ```
    /// use edgenn_guest::Request;
    ///
    /// let req = Request::from_cgi_vars(
    ///     [
    ///         ("REQUEST_METHOD", "GET"),
    ///         ("QUERY_STRING", "text=hello%20world&k=3"),
    ///         ("HTTP_ACCEPT", "application/json"),
    ///         ("EDGENN_CONFIG_MODEL", "wordlm"),
    ///     ],
    ///     Vec::new(),
    /// );
    /// assert_eq!(req.query("text").as_deref(), Some("hello world"));
    /// assert_eq!(req.header("Accept"), Some("application/json"));
    /// assert_eq!(req.config("model"), Some("wordlm"));
    /// assert_eq!(req.path(), "/");
    /// ```
    pub fn from_cgi_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>, body: Vec<u8>) -> Request
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut req = Request {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            body,
            ..Request::default()
        };
        let mut content_length = None;
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            match key {
                "REQUEST_METHOD" => req.method = value.to_ascii_uppercase(),
                "PATH_INFO" if !value.is_empty() => req.path = value.to_owned(),
                "QUERY_STRING" => req.query_string = value.to_owned(),
                "CONTENT_TYPE" if !value.is_empty() => req.content_type = Some(value.to_owned()),
                "CONTENT_LENGTH" if !value.is_empty() => content_length = Some(value.to_owned()),
                _ => {
                    if let Some(name) = key.strip_prefix("HTTP_") {
                        let name = name.to_ascii_lowercase().replace('_', "-");
                        req.headers.push((name, value.to_owned()));
                    } else if let Some(name) = key.strip_prefix(CONFIG_PREFIX) {
                        req.config.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
        }
        // CGI passes these two outside HTTP_*; make header() find them like any other.
        if let Some(ct) = &req.content_type
            && req.header("content-type").is_none()
        {
            req.headers.push(("content-type".to_owned(), ct.clone()));
        }
        if let Some(len) = content_length
            && req.header("content-length").is_none()
        {
            req.headers.push(("content-length".to_owned(), len));
        }
        if req.content_type.is_none() {
            req.content_type = req.header("content-type").map(str::to_owned);
        }
        req
    }

    /// The HTTP method, upper-case (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path below the app's route, always starting with `/` (`/` for the route itself).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, not decoded, without `?` (empty if none).
    pub fn query_string(&self) -> &str {
        &self.query_string
    }

    /// The first value of query parameter `key`, percent-decoded (`+` is a space).
    pub fn query(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// All query parameters in order, percent-decoded. A parameter without `=` has an empty
    /// value.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query_string)
    }

    /// The value of header `name` (case-insensitive; `-` and `_` are the same, as the CGI
    /// variable names cannot tell them apart).
    pub fn header(&self, name: &str) -> Option<&str> {
        let wanted = name.to_ascii_lowercase().replace('_', "-");
        self.headers
            .iter()
            .find(|(k, _)| *k == wanted)
            .map(|(_, v)| v.as_str())
    }

    /// All headers, names lower-case with `-` (`user-agent`).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The full `Content-Type` header, parameters included, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The media type of the body without parameters, lower-case: `multipart/form-data` for
    /// `multipart/form-data; boundary=xyz`.
    pub fn media_type(&self) -> Option<String> {
        let ct = self.content_type.as_deref()?;
        let essence = ct.split(';').next().unwrap_or("").trim();
        (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
    }

    /// The request body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Parses the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The part named `name` of a `multipart/form-data` body (`Ok(None)` if there is no such
    /// field; an error if the body is not multipart/form-data or is malformed).
    pub fn form_part(&self, name: &str) -> Result<Option<Part<'_>>, MultipartError> {
        multipart::find(&self.body, self.content_type.as_deref().unwrap_or(""), name)
    }

    /// The app's configuration value `key` (manifest `[config]`, passed as
    /// `EDGENN_CONFIG_<KEY>`; `key` is matched case-insensitively, `-` as `_`).
    pub fn config(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_uppercase().replace('-', "_");
        self.config.get(&key).map(String::as_str)
    }

    /// The model this request asks for, as every built-in app chooses it: `?model=`, else the
    /// app's `[config] model`, else `default`; on `?backend=`, else `[config] backend`, else
    /// the model's own default backend.
    ///
    /// ```
    /// use edgenn_guest::Request;
    ///
    /// let req = Request::builder().query("backend=tract").config("model", "wordlm").build();
    /// let choice = req.model_choice("fallback");
    /// assert_eq!(choice.reference(), "wordlm@tract");
    /// ```
    pub fn model_choice(&self, default: &str) -> ModelChoice {
        let name = self
            .query("model")
            .or_else(|| self.config("model").map(str::to_owned));
        let backend = self
            .query("backend")
            .or_else(|| self.config("backend").map(str::to_owned));
        ModelChoice {
            name: name.unwrap_or_else(|| default.to_owned()),
            backend,
        }
    }

    /// A request to test a handler natively: `GET /` with no body unless set.
    pub fn builder() -> RequestBuilder {
        RequestBuilder::default()
    }
}

/// A model and, if one is asked for, a backend: see [`Request::model_choice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    /// The model's name.
    pub name: String,
    /// The backend asked for (`ort`, `tract`), if any.
    pub backend: Option<String>,
}

impl ModelChoice {
    /// What [`crate::nn::Model::load`] takes: `name` or `name@backend`.
    pub fn reference(&self) -> String {
        match &self.backend {
            Some(backend) => format!("{}@{backend}", self.name),
            None => self.name.clone(),
        }
    }

    /// Loads the chosen model.
    pub fn load(&self) -> Result<crate::nn::Model, crate::nn::NnError> {
        crate::nn::Model::load(&self.reference())
    }
}

/// Builds a [`Request`] for a native unit test of a handler.
///
/// ```
/// use edgenn_guest::Request;
///
/// let req = Request::builder()
///     .method("POST")
///     .path("/x")
///     .query("k=3")
///     .header("content-type", "application/json")
///     .config("model", "wordlm")
///     .body(br#"{"text":"hi"}"#.to_vec())
///     .build();
/// assert_eq!((req.method(), req.path(), req.query("k").as_deref()), ("POST", "/x", Some("3")));
/// assert_eq!(req.media_type().as_deref(), Some("application/json"));
/// ```
#[derive(Debug, Default, Clone)]
pub struct RequestBuilder {
    vars: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RequestBuilder {
    /// The HTTP method (default `GET`).
    pub fn method(self, method: &str) -> Self {
        self.var("REQUEST_METHOD", method)
    }

    /// The path below the app's route (default `/`).
    pub fn path(self, path: &str) -> Self {
        self.var("PATH_INFO", path)
    }

    /// The raw query string, without `?`.
    pub fn query(self, query: &str) -> Self {
        self.var("QUERY_STRING", query)
    }

    /// A request header.
    pub fn header(self, name: &str, value: &str) -> Self {
        let variable = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        let with_header = self.var(&variable, value);
        if name.eq_ignore_ascii_case("content-type") {
            with_header.var("CONTENT_TYPE", value)
        } else {
            with_header
        }
    }

    /// An app config value, as the manifest's `[config]` would give it.
    pub fn config(self, key: &str, value: &str) -> Self {
        let variable = format!(
            "{CONFIG_PREFIX}{}",
            key.to_ascii_uppercase().replace(['-', '.'], "_")
        );
        self.var(&variable, value)
    }

    /// The body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The request.
    pub fn build(self) -> Request {
        Request::from_cgi_vars(self.vars, self.body)
    }

    fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }
}

fn lossy(s: OsString) -> String {
    s.into_string()
        .unwrap_or_else(|s| s.to_string_lossy().into_owned())
}

/// Splits a query string into decoded `(key, value)` pairs; empty pieces (`a=1&&b=2`) are
/// skipped.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space in query strings). Malformed escapes are kept as
/// they are; invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%e2%80%99"), "\u{2019}");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        assert_eq!(percent_decode(""), "");
    }

    #[test]
    fn query_parsing() {
        let pairs = parse_query("k=5&text=I+want+to&&flag&empty=&k=7");
        assert_eq!(
            pairs,
            vec![
                ("k".into(), "5".into()),
                ("text".into(), "I want to".into()),
                ("flag".into(), "".into()),
                ("empty".into(), "".into()),
                ("k".into(), "7".into()),
            ]
        );
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn request_from_cgi_vars() {
        let req = Request::from_cgi_vars(
            [
                ("REQUEST_METHOD", "post"),
                ("PATH_INFO", "/sub"),
                ("QUERY_STRING", "k=5&model=efficientnet-lite0%40tract"),
                ("CONTENT_TYPE", "multipart/form-data; boundary=XyZ"),
                ("CONTENT_LENGTH", "3"),
                ("HTTP_USER_AGENT", "curl/8"),
                ("HTTP_X_TRACE_ID", "abc"),
                ("EDGENN_CONFIG_MODEL", "m"),
                ("EDGENN_CONFIG_MAX_TOKENS", "9"),
                ("PATH", "/usr/bin"),
            ],
            b"abc".to_vec(),
        );
        assert_eq!(req.method(), "POST");
        assert_eq!(req.path(), "/sub");
        assert_eq!(req.query("k").as_deref(), Some("5"));
        assert_eq!(
            req.query("model").as_deref(),
            Some("efficientnet-lite0@tract")
        );
        assert_eq!(req.query("missing"), None);
        assert_eq!(req.query_string(), "k=5&model=efficientnet-lite0%40tract");
        assert_eq!(req.header("user-agent"), Some("curl/8"));
        assert_eq!(req.header("X-Trace-Id"), Some("abc"));
        assert_eq!(req.header("x_trace_id"), Some("abc"));
        assert_eq!(req.header("content-type"), req.content_type());
        assert_eq!(req.header("content-length"), Some("3"));
        assert_eq!(req.media_type().as_deref(), Some("multipart/form-data"));
        assert_eq!(req.config("model"), Some("m"));
        assert_eq!(req.config("max-tokens"), Some("9"));
        assert_eq!(req.config("MAX_TOKENS"), Some("9"));
        assert_eq!(req.config("path"), None);
        assert_eq!(req.body(), b"abc");
    }

    #[test]
    fn defaults_and_json() {
        let req = Request::from_cgi_vars(
            [("HTTP_CONTENT_TYPE", "Application/JSON")],
            br#"{"text":"hi"}"#.to_vec(),
        );
        assert_eq!(req.method(), "GET");
        assert_eq!(req.path(), "/");
        assert_eq!(req.media_type().as_deref(), Some("application/json"));
        let v: serde_json::Value = req.json().unwrap();
        assert_eq!(v["text"], "hi");
        let none = Request::from_cgi_vars(Vec::<(&str, &str)>::new(), Vec::new());
        assert_eq!(none.content_type(), None);
        assert_eq!(none.media_type(), None);
    }
}
