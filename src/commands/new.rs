//! `edgenn new`: a new app from a template, in Rust, Python or JavaScript.

use super::template::{self, Language};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The app's name (a-z, 0-9, '-', '_').
    name: String,
    /// Where to create it (default: ./<name>).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The app's language: rust (with the guest SDK), python or js (wasi:http components).
    #[arg(long, value_enum, default_value = "rust")]
    lang: Language,
    /// A Rust app as a wasi:http/proxy component instead of a WAGI module (the same handler
    /// and SDK API). Python and JavaScript apps are always components.
    #[arg(long)]
    component: bool,
}

pub fn execute(args: NewArgs) -> anyhow::Result<()> {
    let path = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    template::create(&args.name, args.lang, args.component, &path)?;
    let build = match args.lang {
        Language::Rust if args.component => format!("{}/build.sh", path.display()),
        Language::Rust => format!("scripts/guest-cargo build --release --manifest-path {}/Cargo.toml", path.display()),
        Language::Python | Language::Js => format!("{}/build.sh", path.display()),
    };
    println!(
        "created {} from the edgenn app template; build it with `{build}`, see {}/README.md",
        args.name,
        path.display()
    );
    Ok(())
}
