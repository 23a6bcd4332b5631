//! Test program: sleeps for `?ms=` milliseconds (default 8000) with `std::thread::sleep`, which
//! is a WASI `poll_oneoff` on a relative clock: time spent in the host, where epoch interruption
//! cannot reach. The gateway must still answer 504 at the app's deadline.

use edgenn_guest::{Request, Response};
use serde_json::json;
use std::time::Duration;

fn main() {
    edgenn_guest::run(handle);
}

fn handle(req: Request) -> Response {
    let ms: u64 = req.query("ms").and_then(|v| v.parse().ok()).unwrap_or(8000);
    std::thread::sleep(Duration::from_millis(ms));
    Response::json(200, &json!({ "slept_ms": ms }))
}
