//! `edgenn push` and `edgenn pull`: an app or model folder to and from any OCI registry, as a
//! content-addressed artifact (see [`crate::oci`]).

use crate::oci::{self, registry};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PushArgs {
    /// The app folder (with edgenn.toml and its built module), or with --model a model folder
    /// (with model.toml).
    folder: PathBuf,
    /// Where to push it: REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/apps/classify:1.0.
    reference: String,
    /// The folder is a model, not an app.
    #[arg(long)]
    model: bool,
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:...
    reference: String,
    /// The folder to write it into (created): an app folder or a model folder, as pushed.
    folder: PathBuf,
}

pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let artifact = if args.model { oci::pack_model(&args.folder) } else { oci::pack_app(&args.folder) }
        .map_err(|e| anyhow::anyhow!("{}: {}", args.folder.display(), crate::nn::describe(&e)))?;
    let located =
        registry::push(&artifact, &args.reference).await.map_err(|e| anyhow::anyhow!(crate::nn::describe(&e)))?;
    print(&located);
    Ok(())
}

pub async fn pull(args: PullArgs) -> anyhow::Result<()> {
    let located = registry::pull(&args.reference, &args.folder, registry::PullLimits::default())
        .await
        .map_err(|e| anyhow::anyhow!(crate::nn::describe(&e)))?;
    print(&located);
    Ok(())
}

fn print(located: &registry::Located) {
    let json =
        serde_json::json!({ "kind": located.kind.as_str(), "reference": located.reference, "digest": located.digest });
    println!("{json}");
}
