//! Test program for the guest ABI: answers, as JSON, what the gateway handed it: method, path,
//! raw query string, headers, every environment variable, the arguments and the body.
//!
//! `request_count` comes from a static counter: it is 1 on every request if, as promised, each
//! request gets a fresh instance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use edgenn_guest::{Request, Response};
use serde_json::json;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Bodies are echoed (lossily, as UTF-8) up to this many bytes.
const ECHO_BYTES: usize = 4096;

fn main() {
    let count = REQUESTS.fetch_add(1, Ordering::SeqCst) + 1;
    edgenn_guest::run(|req| handle(req, count));
}

fn handle(req: Request, request_count: u64) -> Response {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let headers: BTreeMap<&str, &str> = req.headers().collect();
    let body = req.body();
    Response::json(
        200,
        &json!({
            "method": req.method(),
            "path": req.path(),
            "query": req.query_string(),
            "query_pairs": req.query_pairs(),
            "content_type": req.content_type(),
            "headers": headers,
            "env": env,
            "args": std::env::args().collect::<Vec<_>>(),
            "body_len": body.len(),
            "body": String::from_utf8_lossy(&body[..body.len().min(ECHO_BYTES)]),
            "request_count": request_count,
        }),
    )
}
