//! `edgenn componentize MODULE -o COMPONENT`: turns a `wasm32-wasip1` reactor module with
//! `wit-bindgen` exports (a Rust app built with the guest SDK's `component` feature) into a
//! `wasi:http/proxy` component. A module that still imports WASI preview1 gets the preview1
//! *proxy* adapter that wasmtime publishes (crate `wasi-preview1-component-adapter-provider`);
//! the SDK's component apps import none (it defines the four std needs, `guests/sdk/src/
//! preview1.rs`), so theirs have no adapter. What `wasm-tools component new --adapt
//! wasi_snapshot_preview1=<proxy adapter>` does, without another tool to install.

use anyhow::Context;
use std::path::PathBuf;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
};

#[derive(clap::Args)]
pub struct ComponentizeArgs {
    /// The core module (`target/wasm32-wasip1/release/<app>.wasm` of a cdylib).
    module: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn execute(args: ComponentizeArgs) -> anyhow::Result<()> {
    let module = std::fs::read(&args.module).with_context(|| format!("reading {}", args.module.display()))?;
    let component = componentize(&module).with_context(|| format!("componentizing {}", args.module.display()))?;
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.output, &component).with_context(|| format!("writing {}", args.output.display()))?;
    println!("{} ({} bytes)", args.output.display(), component.len());
    Ok(())
}

/// The component for a module: its `component-type` sections say what it imports and exports,
/// the adapter maps its preview1 imports onto WASI 0.2 (wit-component adds it only when the
/// module has such imports).
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER)?
        .validate(true)
        .encode()
}
