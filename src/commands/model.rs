//! `edgenn model push`: adds or replaces a shared model in a running gateway's repository.

use super::client;
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
