//! The WAGI-style guest ABI: a request becomes CGI environment variables plus a body on stdin;
//! the guest's stdout is header lines, an empty line and the body.

use bytes::Bytes;

/// What the guest is given.
#[derive(Debug, Clone, Default)]
pub struct GuestRequest {
    pub method: String,
    /// The app's route, e.g. `/v1/classify` or `/apps/classify`.
    pub script_name: String,
    /// The path below the route, starting with `/`.
    pub path_info: String,
    /// Raw query string without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The gateway's id for this request: the `x-request-id` of its answer and the
    /// `request` field of its log records (the guest's stderr among them).
    pub id: String,
}

/// What the guest answered.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestResponse {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The CGI variables for one request, followed by the app's config values.
pub fn environment(request: &GuestRequest, config_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("GATEWAY_INTERFACE".to_string(), "CGI/1.1".to_string()),
        ("SERVER_SOFTWARE".to_string(), concat!("edgenn/", env!("CARGO_PKG_VERSION")).to_string()),
        ("SERVER_PROTOCOL".to_string(), "HTTP/1.1".to_string()),
        ("REQUEST_METHOD".to_string(), request.method.clone()),
        ("SCRIPT_NAME".to_string(), request.script_name.clone()),
        ("PATH_INFO".to_string(), request.path_info.clone()),
        ("QUERY_STRING".to_string(), request.query.clone()),
        ("CONTENT_LENGTH".to_string(), request.body.len().to_string()),
    ];
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("content-type") {
            env.push(("CONTENT_TYPE".to_string(), value.clone()));
        }
        env.push((header_variable(name), value.clone()));
    }
    env.extend(config_env.iter().cloned());
    env
}

/// `x-request-id` -> `HTTP_X_REQUEST_ID`.
fn header_variable(name: &str) -> String {
    let mut variable = String::with_capacity(5 + name.len());
    variable.push_str("HTTP_");
    variable.extend(name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }));
    variable
}

/// `[config] max-words = 3` -> `EDGENN_CONFIG_MAX_WORDS=3`.
pub fn config_variable(key: &str) -> String {
    let mut variable = String::from("EDGENN_CONFIG_");
    variable.extend(key.chars().map(|c| if c == '-' || c == '.' { '_' } else { c.to_ascii_uppercase() }));
    variable
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResponseError {
    #[error("the guest wrote no response")]
    Empty,
    #[error("the guest's response has no empty line between headers and body")]
    NoHeaderEnd,
    #[error("the guest's response header line {0:?} is not `name: value`")]
    BadHeader(String),
    #[error("the guest's response status {0:?} is not a number from 100 to 599")]
    BadStatus(String),
}

/// Parses what the guest wrote to stdout.
pub fn parse_response(output: Bytes) -> Result<GuestResponse, ResponseError> {
    if output.is_empty() {
        return Err(ResponseError::Empty);
    }
    let (head_len, body_start) = find_header_end(&output).ok_or(ResponseError::NoHeaderEnd)?;
    let head = String::from_utf8_lossy(&output[..head_len]);
    let mut response = GuestResponse {
        status: 200,
        content_type: "text/plain; charset=utf-8".to_string(),
        headers: Vec::new(),
        body: output.slice(body_start..),
    };
    for line in head.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| ResponseError::BadHeader(line.to_string()))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            response.status = code
                .parse()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| ResponseError::BadStatus(value.to_string()))?;
        } else if name.eq_ignore_ascii_case("content-type") {
            response.content_type = value.to_string();
        } else {
            response.headers.push((name.to_string(), value.to_string()));
        }
    }
    Ok(response)
}

/// Length of the header block and start of the body: the first `\n\n` or `\r\n\r\n`.
fn find_header_end(output: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < output.len() {
        if output[i] == b'\n' {
            match output.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if output.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    // A guest that wrote only headers (no body) and ended with a single newline.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_cgi_environment() {
        let request = GuestRequest {
            method: "POST".into(),
            script_name: "/v1/classify".into(),
            path_info: "/".into(),
            query: "k=3&backend=tract".into(),
            headers: vec![("content-type".into(), "image/png".into()), ("x-request-id".into(), "abc".into())],
            body: Bytes::from_static(b"12345"),
            id: "1".into(),
        };
        let env = environment(&request, &[(config_variable("model"), "m".into())]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("QUERY_STRING"), Some("k=3&backend=tract"));
        assert_eq!(get("CONTENT_TYPE"), Some("image/png"));
        assert_eq!(get("CONTENT_LENGTH"), Some("5"));
        assert_eq!(get("HTTP_X_REQUEST_ID"), Some("abc"));
        assert_eq!(get("EDGENN_CONFIG_MODEL"), Some("m"));
    }

    #[test]
    fn parses_headers_status_and_body() {
        let out = Bytes::from_static(b"content-type: application/json\nstatus: 404\nx-extra: 1\n\n{\"error\":\"x\"}");
        let response = parse_response(out).unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.content_type, "application/json");
        assert_eq!(response.headers, vec![("x-extra".to_string(), "1".to_string())]);
        assert_eq!(&response.body[..], b"{\"error\":\"x\"}");
    }

    #[test]
    fn accepts_crlf_and_cgi_style_status() {
        let response =
            parse_response(Bytes::from_static(b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\nok")).unwrap();
        assert_eq!((response.status, &response.body[..]), (201, &b"ok"[..]));
    }

    #[test]
    fn body_may_contain_blank_lines_and_binary() {
        let response = parse_response(Bytes::from_static(b"content-type: x\n\na\n\n\xff\x00")).unwrap();
        assert_eq!(&response.body[..], b"a\n\n\xff\x00");
    }

    #[test]
    fn rejects_malformed_output() {
        assert_eq!(parse_response(Bytes::new()), Err(ResponseError::Empty));
        assert_eq!(parse_response(Bytes::from_static(b"just text")), Err(ResponseError::NoHeaderEnd));
        assert!(matches!(parse_response(Bytes::from_static(b"status: 9000\n\n")), Err(ResponseError::BadStatus(_))));
        assert!(matches!(parse_response(Bytes::from_static(b"no colon\n\n")), Err(ResponseError::BadHeader(_))));
    }
}
