//! The type-ahead app as a standard `wasi:http/proxy` component: the same handler as the WAGI
//! `predict`, exported as `wasi:http/incoming-handler`, calling wasi:nn through WIT.

edgenn_guest::component_main!(predict::handle);
