//! my-component as a `wasi:http/proxy` component: `component_main!` exports the handler as
//! `wasi:http/incoming-handler`, and the SDK's `Model` calls wasi:nn through WIT. The handler
//! (handler.rs) is the same as a WAGI module's: only this file differs.

// Inside guests/ the handler is the WAGI template's own file (one source for both templates);
// `edgenn new` writes a copy beside this file and drops these lines and the path.
#[path = "../../template/src/handler.rs"]
mod handler;

edgenn_guest::component_main!(handler::handle);
