//! The component executor: standard `wasi:http/proxy` components (WASI 0.2), beside WAGI
//! modules, on the same engine, pool, model store and metrics.
//!
//! A component is linked against the whole WASI 0.2 set, as `wasmtime serve` does, because
//! real toolchains import more than the proxy world (CPython imports `wasi:filesystem` and
//! `wasi:sockets`, the JS engine `wasi:cli/terminal-*`), but nothing is granted: no preopened
//! directory, no socket, no name lookup, an environment holding only the app's config, and
//! outbound HTTP only to the origins the app lists ([`super::outbound`]). wasi:nn is our WIT
//! host ([`crate::nn::wit`]). The linker accepts any semver-compatible 0.2.x import.
//!
//! One request is one fresh instance of the pre-linked component (`ProxyPre`), driven to
//! completion on the calling (blocking) thread: guest code and inference never run on the
//! async executor, while outbound I/O and timers still use the gateway's tokio runtime. The
//! deadline covers everything: guest code by epoch interruption, sleeps and outbound I/O by
//! dropping the whole run at the deadline, inference by the wasi-nn host.

use super::outbound::{OpenConnections, OutboundPolicy};
use super::wagi::{GuestRequest, GuestResponse};
use super::{AppPolicy, GuestRun, Runtime, RuntimeError};
use crate::metrics::AppLabels;
use crate::nn::limits::MemoryBudget;
use crate::nn::wit::{WitNn, WitNnView};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Headers the gateway sets on every request to a component (any a client sends are dropped).
const GATEWAY_HEADER_PREFIX: &str = "edgenn-";
/// The app's route the request came in on (`/v1/predict`, `/apps/predict`).
pub const ROUTE_HEADER: &str = "edgenn-route";
/// The path below that route, starting with `/`.
pub const PATH_INFO_HEADER: &str = "edgenn-path-info";

/// Resources (streams, fields, tensors...) one instance may hold at once in its table.
const MAX_RESOURCES: usize = 16 * 1024;

/// Whether `wasm` is a component (layer 1 of the binary format) rather than a core module.
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [1, 0]
}

pub struct ComponentState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    table: ResourceTable,
    nn: WitNn,
    budget: MemoryBudget,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

/// The linker every component is pre-linked with.
pub(super) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::nn::wit::add_to_linker(&mut linker, |state: &mut ComponentState| WitNnView {
        table: &mut state.table,
        nn: &mut state.nn,
        budget: &mut state.budget,
    })?;
    Ok(linker)
}

/// A component compiled and pre-linked once.
pub(super) fn prepare(
    linker: &Linker<ComponentState>,
    component: &Component,
) -> Result<ProxyPre<ComponentState>, RuntimeError> {
    let pre = linker.instantiate_pre(component).map_err(|e| RuntimeError::ComponentImports(e.into()))?;
    ProxyPre::new(pre).map_err(|e| RuntimeError::NotAProxy(e.into()))
}

impl Runtime {
    /// Runs one request in a fresh instance of a component. Called on a blocking thread inside
    /// the gateway's tokio runtime (as WAGI runs are).
    pub(super) fn run_component(
        &self,
        pre: &ProxyPre<ComponentState>,
        policy: &AppPolicy,
        request: GuestRequest,
    ) -> Result<GuestRun, RuntimeError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| RuntimeError::Instantiate(e.into()))?;
        handle.block_on(self.serve_component(pre, policy, request))
    }

    async fn serve_component(
        &self,
        pre: &ProxyPre<ComponentState>,
        policy: &AppPolicy,
        request: GuestRequest,
    ) -> Result<GuestRun, RuntimeError> {
        let started = Instant::now();
        let deadline = started + policy.deadline;
        let memory_bytes = policy.memory_bytes.min(self.config.max_memory_bytes);
        let request_id = request.id.clone();
        let stderr = MemoryOutputPipe::new(16 << 10);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .envs(&policy.config_env[..])
            .arg(&policy.name)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let outbound = OutboundPolicy {
            app: policy.name.clone(),
            allowed: policy.outbound.clone(),
            deadline,
            max_body_bytes: memory_bytes,
            tls: self.outbound_tls.clone(),
            open: {
                let app = AppLabels { app: policy.name.clone() };
                let metrics = &self.metrics;
                OpenConnections::for_request(
                    metrics.outbound_connections.get_or_create(&app).clone(),
                    metrics.outbound_refused.get_or_create(&app).clone(),
                )
            },
        };
        let registry = self.models.registry(policy.models.clone());
        let state = ComponentState {
            wasi,
            http: WasiHttpCtx::new(),
            outbound,
            table,
            nn: WitNn::new(registry, deadline, self.metrics.clone()),
            budget: MemoryBudget::new(memory_bytes),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.budget);
        store.set_epoch_deadline(self.deadline_ticks(policy));
        store.epoch_deadline_trap();

        let incoming = http_request(&request)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, incoming).map_err(wasm)?;
        let outparam = store.data_mut().http().new_response_outparam(sender).map_err(wasm)?;

        self.metrics.instantiations.inc();
        let mut setup = None;
        // The guest owns the store: when it returns, the store and the response sender go with
        // it, so a guest that never answers ends the wait below instead of hanging it.
        let guest = async {
            let mut store = store;
            let result = match pre.instantiate_async(&mut store).await {
                Ok(proxy) => {
                    setup = Some(started.elapsed());
                    proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
                }
                Err(error) => Err(error),
            };
            let budget = &store.data().budget;
            (result, budget.denied, budget.limit)
        };
        let max_output = self.config.max_output_bytes;
        let answer = async move {
            let response = receiver.await.ok()?;
            Some(match response {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = http_body_util::Limited::new(body, max_output).collect().await;
                    Ok((parts, body.map(|collected| collected.to_bytes())))
                }
                Err(code) => Err(code),
            })
        };
        let both = async { tokio::join!(guest, answer) };
        let Ok(((result, denied, limit), answer)) = tokio::time::timeout_at(deadline.into(), both).await else {
            // Dropping the run at the deadline cancels whatever it awaited (a sleep, an
            // upstream server) and frees the instance.
            self.metrics.deadline_kills.inc();
            return Err(RuntimeError::DeadlineExceeded(policy.deadline));
        };
        if let Err(error) = result {
            return Err(self.classify(policy, &request_id, denied, limit, error, None, &stderr.contents()));
        }
        let response = match answer {
            None => return Err(RuntimeError::NoResponse),
            Some(Err(code)) => return Err(RuntimeError::ErrorResponse(format!("{code:?}"))),
            Some(Ok((_, Err(_)))) => return Err(RuntimeError::OutputTooLarge(max_output)),
            Some(Ok((parts, Ok(body)))) => guest_response(parts, body),
        };
        Ok(GuestRun { response, setup: setup.unwrap_or_default(), total: started.elapsed() })
    }
}

fn wasm(error: wasmtime::Error) -> RuntimeError {
    RuntimeError::Instantiate(error.into())
}

/// The request as the component sees it: the path it was sent to, with its query.
fn http_request(request: &GuestRequest) -> Result<hyper::Request<Full<Bytes>>, RuntimeError> {
    let mut path = format!("{}{}", request.script_name, request.path_info);
    if path.is_empty() {
        path.push('/');
    }
    if !request.query.is_empty() {
        path.push('?');
        path.push_str(&request.query);
    }
    let host = request.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("host")).map(|(_, v)| v.as_str());
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(host.unwrap_or("localhost"))
        .path_and_query(path)
        .build()
        .or_else(|_| http::Uri::builder().scheme("http").authority("localhost").path_and_query("/").build())
        .map_err(|e| RuntimeError::Instantiate(e.into()))?;
    let mut builder = hyper::Request::builder().method(request.method.as_str()).uri(uri);
    // Hop-by-hop headers described the client's connection, which the guest does not see; the
    // gateway's own headers are the gateway's to set.
    const HOP_BY_HOP: [&str; 5] = ["connection", "keep-alive", "transfer-encoding", "upgrade", "te"];
    for (name, value) in &request.headers {
        let hop = HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop));
        let ours = name.eq_ignore_ascii_case("content-length");
        if !hop && !ours && !name.to_ascii_lowercase().starts_with(GATEWAY_HEADER_PREFIX) {
            builder = builder.header(name, value);
        }
    }
    // The body is whole by now (a chunked one too), so its length is known; with
    // `content-length: 0` the guest need not open the body stream, which costs wasi-http a
    // task on the gateway's async workers and a wake-up of this thread.
    builder = builder.header(http::header::CONTENT_LENGTH, request.body.len());
    // What a WAGI app gets as SCRIPT_NAME and PATH_INFO, as Spin passes `spin-path-info`: the
    // app need not know the route it is deployed under.
    builder = builder.header(ROUTE_HEADER, &request.script_name).header(PATH_INFO_HEADER, path_info(request));
    builder.body(Full::new(request.body.clone())).map_err(|e| RuntimeError::Instantiate(e.into()))
}

fn path_info(request: &GuestRequest) -> &str {
    if request.path_info.is_empty() { "/" } else { &request.path_info }
}

fn guest_response(parts: http::response::Parts, body: Bytes) -> GuestResponse {
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != http::header::CONTENT_TYPE)
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    GuestResponse { status: parts.status.as_u16(), content_type, headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_and_components_are_told_apart_by_their_header() {
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm"));
        assert!(!is_component(b"not wasm at all"));
    }

    #[test]
    fn the_request_keeps_its_path_query_and_headers() {
        let request = GuestRequest {
            method: "POST".into(),
            script_name: "/v1/digits".into(),
            path_info: "/x".into(),
            query: "model=digits@ort".into(),
            headers: vec![("host".into(), "edge.example:8080".into()), ("x-id".into(), "7".into())],
            body: Bytes::from_static(b"{}"),
            id: "1".into(),
        };
        let http = http_request(&request).unwrap();
        assert_eq!(http.uri().to_string(), "http://edge.example:8080/v1/digits/x?model=digits@ort");
        assert_eq!(http.headers()["x-id"], "7");
        assert_eq!(http.headers()[ROUTE_HEADER], "/v1/digits");
        assert_eq!(http.headers()[PATH_INFO_HEADER], "/x");
        assert_eq!(http.headers()[http::header::CONTENT_LENGTH], "2");
        let spoofed = GuestRequest {
            headers: vec![("Edgenn-Route".into(), "/admin".into()), ("content-length".into(), "99".into())],
            script_name: "/apps/a".into(),
            ..request
        };
        let http = http_request(&spoofed).unwrap();
        assert_eq!(http.headers().get_all(ROUTE_HEADER).iter().collect::<Vec<_>>(), ["/apps/a"]);
        assert_eq!(http.headers().get_all(http::header::CONTENT_LENGTH).iter().collect::<Vec<_>>(), ["2"]);
        assert_eq!(http.method(), "POST");
    }
}
