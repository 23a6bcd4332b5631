//! `edgenn model push`: adds or replaces a shared model in a running gateway's repository.
//! And the hidden `edgenn probe-load`, which the gateway runs to load a model in a child
//! process under a memory limit before it lets the model in (`nn::load_limit`).

use super::client;
use crate::nn::backend::BackendKind;
use crate::nn::backend::ort::OrtOptions;
use crate::nn::load_limit;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(clap::Subcommand)]
enum ModelCommand {
    /// Send a model folder (model.toml and its files) to a gateway: loaded there, then in
    /// service for every app that declares it and for /v2; kept across restarts.
    Push(PushArgs),
}

#[derive(clap::Args)]
struct PushArgs {
    /// The model folder (with model.toml).
    model: PathBuf,
    /// The gateway, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "EDGENN_GATEWAY")]
    to: String,
    /// The gateway's admin token.
    #[arg(long, env = "EDGENN_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

pub fn execute(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Push(push) => {
            let answer = client::push_model(&push.model, &push.to, &push.token)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ProbeLoadArgs {
    backend: BackendKind,
    /// The ONNX file.
    file: PathBuf,
    /// The most the load may take, in bytes.
    max_bytes: u64,
    #[arg(long)]
    ort_library: Option<PathBuf>,
    #[arg(long, default_value_t = OrtOptions::default().sessions_per_model)]
    sessions: usize,
    #[arg(long, default_value_t = OrtOptions::default().intra_threads)]
    intra_threads: usize,
}

/// Loads the model and prints the bytes the load took at its peak; fails (or is killed by the
/// kernel's limit) beyond `max_bytes`.
pub fn probe_load(args: ProbeLoadArgs) -> anyhow::Result<()> {
    let ort = OrtOptions { sessions_per_model: args.sessions, intra_threads: args.intra_threads };
    let bytes = load_limit::probe(args.backend, &args.file, args.max_bytes, args.ort_library.as_deref(), ort)?;
    println!("{bytes}");
    Ok(())
}
