//! `edgenn deploy`: sends a local app folder to a running gateway (create or replace).

use super::client;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The app folder (with edgenn.toml and its built module).
    app: PathBuf,
    /// The gateway, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "EDGENN_GATEWAY")]
    to: String,
    /// The gateway's admin token.
    #[arg(long, env = "EDGENN_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

pub fn execute(args: DeployArgs) -> anyhow::Result<()> {
    let answer = client::deploy(&args.app, &args.to, &args.token)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
