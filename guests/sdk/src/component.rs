//! The component flavour: the same [`Request`], [`Response`] and [`crate::nn::Model`], for an
//! app built as a standard `wasi:http/proxy` component (the world in the repository's `wit/`)
//! instead of a WAGI command.
//!
//! Turn on the SDK's `component` feature, make the crate a `cdylib` and name the handler once:
//!
//! ```ignore
//! // Cargo.toml: [lib] crate-type = ["cdylib"]
//! //             edgenn-guest-sdk = { workspace = true, features = ["component"] }
//! edgenn_guest::component_main!(handle);
//!
//! fn handle(req: edgenn_guest::Request) -> edgenn_guest::Response { /* as for WAGI */ }
//! ```
//!
//! `scripts/build-components.sh` builds it for `wasm32-wasip1` and `edgenn componentize` makes
//! it a component (the SDK's own preview1 functions, `preview1.rs`, mean it needs no preview1
//! adapter unless the app uses more of std). Differences from WAGI: the handler is
//! called through `wasi:http/incoming-handler` ([`Request::path`] is still the path below the
//! app's route, from the `edgenn-path-info` header the gateway sets; under another host, the
//! whole path), and wasi:nn is the WIT interface
//! (`load-by-name`, named tensors): [`crate::nn::Session::set_input`] by index passes the
//! index as the tensor's name, which edgenn resolves to the model's input at that index.

use crate::outbound::Fetched;
use crate::{IntoResponse, Request, Response};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "edgenn:app/app",
        pub_export_macro: true,
        export_macro_name: "export_incoming_handler",
        default_bindings_module: "edgenn_guest::component::bindings",
        generate_all,
    });
}

use bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use bindings::wasi::io::streams::StreamError;

/// The header in which edgenn passes the path below the app's route.
const PATH_INFO_HEADER: &str = "edgenn-path-info";

/// Exports `handler` (a `fn(Request) -> impl IntoResponse`) as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! component_main {
    ($handler:path) => {
        #[doc(hidden)]
        struct EdgennIncomingHandler;

        impl $crate::component::bindings::exports::wasi::http::incoming_handler::Guest
            for EdgennIncomingHandler
        {
            fn handle(
                request: $crate::component::bindings::wasi::http::types::IncomingRequest,
                out: $crate::component::bindings::wasi::http::types::ResponseOutparam,
            ) {
                $crate::component::serve(request, out, $handler);
            }
        }

        $crate::component::bindings::export_incoming_handler!(
            EdgennIncomingHandler with_types_in $crate::component::bindings
        );
    };
}

/// Reads the request, calls `handler`, writes its response. Called by [`component_main!`].
#[doc(hidden)]
pub fn serve<R: IntoResponse>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    let response = match read_request(request) {
        Ok(request) => handler(request).into_response(),
        Err(message) => Response::error(400, format!("cannot read the request: {message}")),
    };
    write_response(response, out);
}

/// The request as the SDK's [`Request`]: through the same CGI variables a WAGI app gets, so
/// both flavours parse headers, query and config alike.
fn read_request(request: IncomingRequest) -> Result<Request, String> {
    let method = match request.method() {
        Method::Get => "GET".to_owned(),
        Method::Head => "HEAD".to_owned(),
        Method::Post => "POST".to_owned(),
        Method::Put => "PUT".to_owned(),
        Method::Delete => "DELETE".to_owned(),
        Method::Connect => "CONNECT".to_owned(),
        Method::Options => "OPTIONS".to_owned(),
        Method::Trace => "TRACE".to_owned(),
        Method::Patch => "PATCH".to_owned(),
        Method::Other(other) => other,
    };
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_owned());
    let (path, query) = path_with_query
        .split_once('?')
        .unwrap_or((path_with_query.as_str(), ""));
    let mut vars = vec![
        ("REQUEST_METHOD".to_owned(), method),
        ("PATH_INFO".to_owned(), path.to_owned()),
        ("QUERY_STRING".to_owned(), query.to_owned()),
    ];
    // An empty body is not read: opening the stream costs the host a task (edgenn says
    // `content-length: 0` for every request without a body).
    let mut empty_body = false;
    for (name, value) in request.headers().entries() {
        let value = String::from_utf8_lossy(&value).into_owned();
        if name.eq_ignore_ascii_case("content-length") {
            empty_body = value == "0";
        }
        // edgenn says which part of the path is below the app's route (what WAGI calls
        // PATH_INFO); it comes after the whole path above, so it wins. Another host's request
        // keeps its whole path.
        if name.eq_ignore_ascii_case(PATH_INFO_HEADER) {
            vars.push(("PATH_INFO".to_owned(), value));
            continue;
        }
        if name.eq_ignore_ascii_case("content-type") {
            vars.push(("CONTENT_TYPE".to_owned(), value.clone()));
        }
        vars.push((
            format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
            value,
        ));
    }
    // The app's [config] is the environment, as for WAGI; asked of wasi:cli/environment
    // directly, since std has none here (`preview1.rs`, like the preview1 proxy adapter).
    vars.extend(bindings::wasi::cli::environment::get_environment());
    let body = if empty_body {
        Vec::new()
    } else {
        read_body(&request)?
    };
    Ok(Request::from_cgi_vars(vars, body))
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let incoming = request
        .consume()
        .map_err(|()| "the body was already taken".to_owned())?;
    let body = read_to_end(&incoming)?;
    IncomingBody::finish(incoming);
    Ok(body)
}

/// All of an incoming body (a request's or an upstream response's).
fn read_to_end(incoming: &IncomingBody) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    // The stream is a child of the body: it is dropped here, before the body is finished.
    let stream = incoming
        .stream()
        .map_err(|()| "the body has no stream".to_owned())?;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

fn write_response(response: Response, out: ResponseOutparam) {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    let (fields, status, body) = match Fields::from_list(&headers) {
        Ok(fields) => (fields, response.status(), response.body().to_vec()),
        // A header wasi:http refuses (a forbidden or malformed one): answer that, not a trap.
        Err(e) => {
            let error = Response::error(
                500,
                format!("the app's response headers are invalid: {e:?}"),
            );
            let fields =
                Fields::from_list(&[("content-type".to_owned(), b"application/json".to_vec())])
                    .unwrap_or_else(|_| Fields::new());
            (fields, 500, error.body().to_vec())
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(status);
    let Ok(outgoing_body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    {
        let Ok(stream) = outgoing_body.write() else {
            return;
        };
        // blocking-write-and-flush takes at most 4096 bytes a call.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}

/// [`crate::outbound::fetch`] for components.
pub(crate) fn fetch(method: &str, url: &str, body: &[u8]) -> Result<Fetched, String> {
    receive(send(method, url, body)?)
}

/// Sends every request before waiting for any answer, so that they are in flight together.
pub(crate) fn fetch_all(requests: &[(&str, &str, &[u8])]) -> Vec<Result<Fetched, String>> {
    let sent: Vec<_> = requests
        .iter()
        .map(|(method, url, body)| send(method, url, body))
        .collect();
    sent.into_iter().map(|sent| receive(sent?)).collect()
}

type Pending = bindings::wasi::http::types::FutureIncomingResponse;

/// Starts `method url` with `body`: the answer is [`receive`]d later.
fn send(method: &str, url: &str, body: &[u8]) -> Result<Pending, String> {
    use bindings::wasi::http::outgoing_handler;
    use bindings::wasi::http::types::{OutgoingRequest, Scheme};

    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let invalid = |what: &str| format!("{url:?}: invalid {what}");
    request
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = request
        .body()
        .map_err(|()| "the request body was already taken".to_owned())?;
    {
        let stream = outgoing_body
            .write()
            .map_err(|()| "no request body stream".to_owned())?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the request body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| format!("{e:?}"))?;

    outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))
}

/// Waits for the answer of a request [`send`] started, and reads its whole body.
fn receive(pending: Pending) -> Result<Fetched, String> {
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(format!("{code:?}")),
        Some(Err(())) | None => return Err("the response was already taken".to_owned()),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "the response body was already taken".to_owned())?;
    let body = read_to_end(&incoming)?;
    drop(incoming);
    Ok(Fetched { status, body })
}
