//! `edgenn run`: serves one app locally with no configuration, an app folder or a bare
//! `.wasm` module with models and config given on the command line.

use super::{EngineArgs, Given};
use crate::apps::AppManifest;
use crate::apps::manifest::Limits;
use crate::gateway::serve;
use crate::nn::backend::BackendKind;
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunArgs {
    /// An app folder (with edgenn.toml) or a .wasm module.
    app: PathBuf,
    /// A model the app may load, from one ONNX file: NAME=PATH; repeatable.
    #[arg(long = "model", value_parser = parse_key_value)]
    models: Vec<(String, String)>,
    /// Backend of the --model files.
    #[arg(long, default_value = "ort")]
    backend: BackendKind,
    /// A config value for a bare .wasm module (EDGENN_CONFIG_<KEY>): KEY=VALUE; repeatable.
    #[arg(long = "config", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// An origin a bare component may call (`https://api.example.com`, `http://127.0.0.1:*`);
    /// repeatable. Without one it may call nothing.
    #[arg(long = "allow-outbound")]
    allowed_outbound_hosts: Vec<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

pub async fn execute(args: RunArgs, given: &Given<'_>) -> anyhow::Result<()> {
    let mut config = args.engine.gateway_config(given)?;
    config.models.files =
        args.models.iter().map(|(name, path)| (name.clone(), PathBuf::from(path), args.backend)).collect();
    if args.app.is_dir() {
        config.apps.dirs = vec![args.app];
    } else {
        let manifest = manifest_for_module(&args.app, &args.models, &args.config, &args.allowed_outbound_hosts)?;
        config.apps.manifests = vec![(manifest, std::env::current_dir()?)];
    }
    serve(config).await
}

/// `edgenn run app.wasm`: a manifest made from the command line.
fn manifest_for_module(
    wasm: &Path,
    models: &[(String, String)],
    config: &[(String, String)],
    allowed_outbound_hosts: &[String],
) -> anyhow::Result<AppManifest> {
    let stem = wasm.file_stem().and_then(|s| s.to_str()).unwrap_or("app");
    let name: String = stem
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let manifest = AppManifest {
        name,
        routes: Vec::new(),
        wasm: wasm.canonicalize().with_context(|| format!("{}", wasm.display()))?,
        models: models.iter().map(|(name, _)| name.clone()).collect(),
        bundled_models: Vec::new(),
        limits: Limits::default(),
        allowed_outbound_hosts: allowed_outbound_hosts.to_vec(),
        config: config.iter().cloned().collect(),
    };
    // Checked exactly as a manifest file would be.
    AppManifest::parse(&toml::to_string(&manifest)?).map_err(|e| anyhow::anyhow!("{e}"))
}
