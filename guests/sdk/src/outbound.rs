//! Outbound HTTP, for components: [`fetch`] another URL from inside a handler.
//!
//! The gateway lets a request through only to the origins in the app's manifest
//! (`allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:*"]`); anything
//! else fails with wasi:http's `HTTP-request-denied`, and nothing leaves the machine. The
//! app's deadline covers the wait, and its memory limit the body. A WAGI app has no network at
//! all: there [`fetch`] always fails.

/// An answer from an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The upstream's status code.
    pub status: u16,
    /// Its body.
    pub body: Vec<u8>,
}

/// Sends `method url` with `body` and waits for the whole answer. The error is a readable
/// description (`HttpRequestDenied` for an origin the app may not reach).
pub fn fetch(method: &str, url: &str, body: &[u8]) -> Result<Fetched, String> {
    #[cfg(all(feature = "component", target_arch = "wasm32"))]
    return crate::component::fetch(method, url, body);
    #[cfg(not(all(feature = "component", target_arch = "wasm32")))]
    {
        let _ = (method, url, body);
        Err(
            "outbound HTTP is only for components (build the app with the SDK's component feature)"
                .to_owned(),
        )
    }
}

/// Sends every `(method, url, body)` at once, then waits for each answer: the answers in the
/// order of the requests. The gateway holds a request to a few connections open at once (8):
/// the ones beyond fail with `ConnectionLimitReached`.
pub fn fetch_all(requests: &[(&str, &str, &[u8])]) -> Vec<Result<Fetched, String>> {
    #[cfg(all(feature = "component", target_arch = "wasm32"))]
    return crate::component::fetch_all(requests);
    #[cfg(not(all(feature = "component", target_arch = "wasm32")))]
    {
        requests
            .iter()
            .map(|(method, url, body)| fetch(method, url, body))
            .collect()
    }
}
