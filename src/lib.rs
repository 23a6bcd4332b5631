//! edgenn: an AI inference edge gateway. WebAssembly guest apps (WAGI-style `wasm32-wasip1`
//! modules) run in wasmtime, one fresh instance per request, and call wasi-nn, which the host
//! serves with ONNX Runtime or tract from a shared model cache.
//!
//! One request reads top to bottom: [`http`] -> [`apps`] -> [`runtime`] -> [`nn`] ->
//! [`nn::backend`]; an Open Inference Protocol request (`/v2`) goes [`http`] -> [`oip`] ->
//! [`nn`]. Changes to the shared models (the admin API's `/admin/models`, Triton's
//! `/v2/repository`) go [`http`] -> [`repository`] -> [`nn`]; deployed apps and uploaded models
//! are kept on disk by [`persist`]; [`oci`] packs apps and models as OCI artifacts and moves
//! them to and from registries, and [`fleet`] keeps a gateway at the desired state a file lists
//! by reference. [`gateway`] wires them together; [`commands`] are the command
//! line.

pub mod apps;
pub mod commands;
pub mod fleet;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod nn;
pub mod oci;
pub mod oip;
pub mod persist;
pub mod repository;
pub mod runtime;

pub use gateway::{Gateway, GatewayConfig, serve};
