//! # edgenn guest SDK
//!
//! Everything a guest app of the edgenn gateway needs, without knowing the guest ABI: a guest
//! is a `wasm32-wasip1` command whose `main` calls [`run`] with a handler that turns a
//! [`Request`] into a [`Response`]. Models are loaded by name through [`nn::Model`] (wasi-nn);
//! model bytes never enter the guest.
//!
//! ```no_run
//! use edgenn_guest::{HttpError, Request, Response, nn};
//!
//! fn main() {
//!     edgenn_guest::run(handle);
//! }
//!
//! fn handle(req: Request) -> Result<Response, HttpError> {
//!     if req.method() != "POST" {
//!         return Err(HttpError::method_not_allowed("POST", "use POST"));
//!     }
//!     // ?model=, else `model = "..."` in the manifest's [config]; ?backend= likewise.
//!     let model = req.model_choice("wordlm").load()?; // cannot load: 404
//!     let input = vec![0.0f32; 4];
//!     let output = model.run_f32(&[nn::Tensor::f32(&[1, 4], &input)])?; // failed: 500
//!     Ok(Response::json(200, &serde_json::json!({ "output": output })))
//! }
//! ```
//!
//! Build it with `scripts/guest-cargo build --release` (see `guests/README.md`).
//!
//! The same code can be built as a standard `wasi:http/proxy` component instead: the
//! `component` feature and `component_main!(handle)` in place of `main` (see [`component`]
//! when built for wasm32 with that feature, and `guests/predict-component`).
//!
//! The WAGI guest ABI (DESIGN.md): the request body arrives on stdin, the method, path, query
//! string, headers (`HTTP_*`) and the app's config (`EDGENN_CONFIG_*`) in environment
//! variables; the response goes to stdout as `Name: value` header lines (`status`,
//! `content-type`, ...), an empty line, then the body.

#![warn(missing_docs)]

#[cfg(all(
    feature = "arena",
    any(test, all(target_arch = "wasm32", not(target_feature = "atomics")))
))]
mod arena;
#[cfg(all(feature = "component", target_arch = "wasm32"))]
pub mod component;
mod error;
pub mod multipart;
pub mod nn;
pub mod outbound;
#[cfg(all(feature = "component", target_arch = "wasm32"))]
mod preview1;
mod request;
mod response;

/// A heap for one request, inside the initial memory: see `arena.rs` (feature `arena`, default).
#[cfg(all(
    feature = "arena",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: arena::ArenaAlloc = arena::ArenaAlloc;

pub use error::{HttpError, IntoResponse};
pub use request::{ModelChoice, Request, RequestBuilder};
pub use response::Response;

use std::io::Write;

/// Reads the request the gateway handed to this instance, calls `handler` and writes its
/// response for the gateway. Call it once, from `main`.
///
/// The handler returns a [`Response`], or a `Result<Response, E>` whose error becomes the
/// answer ([`HttpError`], or a wasi-nn [`nn::NnError`] through `?`). If the request cannot be
/// read (stdin fails), the handler is not called and the answer is a 400 `{"error": ...}`. A
/// panic in the handler aborts the instance, which the gateway answers with a 500.
pub fn run<R: IntoResponse>(handler: impl FnOnce(Request) -> R) {
    let response = match Request::from_env() {
        Ok(request) => handler(request).into_response(),
        Err(e) => Response::error(400, format!("cannot read the request body: {e}")),
    };
    let mut out = std::io::stdout().lock();
    if response
        .write_to(&mut out)
        .and_then(|()| out.flush())
        .is_err()
    {
        // Nowhere left to report it: exiting non-zero makes the gateway answer 500.
        std::process::exit(1);
    }
}

/// Without the `component` feature (or natively, for unit tests) there is nothing to export:
/// the handler is only referenced, so that a component app also builds and tests natively.
#[cfg(not(all(feature = "component", target_arch = "wasm32")))]
#[macro_export]
macro_rules! component_main {
    ($handler:path) => {
        const _: () = {
            let _ = $handler;
        };
    };
}
