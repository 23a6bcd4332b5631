//! `edgenn new`: a new app from the template.

use super::template;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The app's name (a-z, 0-9, '-', '_').
    name: String,
    /// Where to create it (default: ./<name>).
    #[arg(long)]
    path: Option<PathBuf>,
}

pub fn execute(args: NewArgs) -> anyhow::Result<()> {
    let path = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    template::create(&args.name, &path)?;
    println!("created {} from the edgenn app template; see {}/README.md", args.name, path.display());
    Ok(())
}
