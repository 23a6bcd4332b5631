//! `edgenn serve`: the gateway with its bundled apps, the apps deployed over the admin API and
//! the demo page.

use super::{EngineArgs, Given};
use crate::apps::manifest::MANIFEST_FILE;
use crate::fleet::FleetConfig;
use crate::gateway::{AdminConfig, serve};
use crate::http::admin::UploadLimits;
use crate::oci::registry::PullLimits;
use anyhow::bail;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// App directory (with an edgenn.toml) to deploy at start; repeatable.
    #[arg(long = "app", env = "EDGENN_APPS", value_delimiter = ',', default_values = ["guests/classify", "guests/predict", "guests/digits"])]
    app_dirs: Vec<PathBuf>,
    /// Where apps deployed over the admin API are kept (they come back after a restart).
    #[arg(long, default_value = ".edgenn/data", env = "EDGENN_DATA_DIR")]
    data_dir: PathBuf,
    /// Bearer token for the admin API (/admin/...). Without one the admin API answers 401.
    #[arg(long, env = "EDGENN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest admin upload (module + bundled models), in MiB.
    #[arg(long, env = "EDGENN_MAX_UPLOAD_MIB", default_value_t = 512)]
    max_upload_mib: usize,
    /// The demo page's directory, served at `/`.
    #[arg(long, env = "EDGENN_WEB_DEMO", default_value = "web-demo")]
    web_demo: PathBuf,
    /// Serve no demo page.
    #[arg(long, env = "EDGENN_NO_WEB_DEMO", conflicts_with = "web_demo")]
    no_web_demo: bool,
    /// Follow a desired state: a TOML file listing `apps` and `models` by OCI reference, read
    /// again every --fleet-poll-ms (see DESIGN.md).
    #[arg(long, env = "EDGENN_FLEET")]
    fleet: Option<PathBuf>,
    /// Where the fleet keeps what it pulled, by digest, to serve it again offline.
    #[arg(long, env = "EDGENN_FLEET_CACHE", default_value = ".edgenn/fleet-cache")]
    fleet_cache: PathBuf,
    /// How often the fleet file is read again and its references resolved, in ms.
    #[arg(long, env = "EDGENN_FLEET_POLL_MS", default_value_t = 2000)]
    fleet_poll_ms: u64,
    /// How long a registry may go without sending before the fleet gives up that pull, in s.
    #[arg(long, env = "EDGENN_FLEET_READ_TIMEOUT_SECS", default_value_t = PullLimits::default().read_timeout.as_secs())]
    fleet_read_timeout_secs: u64,
    /// The most MiB one artifact's layers may declare.
    #[arg(long, env = "EDGENN_FLEET_MAX_ARTIFACT_MIB", default_value_t = PullLimits::default().max_bytes >> 20)]
    fleet_max_artifact_mib: u64,
}

pub async fn execute(args: ServeArgs, given: &Given<'_>) -> anyhow::Result<()> {
    for dir in &args.app_dirs {
        if given.explicitly("app_dirs") && !dir.join(MANIFEST_FILE).is_file() {
            bail!("--app {}: no {MANIFEST_FILE} there", dir.display());
        }
    }
    let web_demo_present = args.web_demo.join("index.html").is_file();
    if !args.no_web_demo && given.explicitly("web_demo") && !web_demo_present {
        bail!("--web-demo {}: no index.html there", args.web_demo.display());
    }
    if let Some(file) = &args.fleet {
        crate::fleet::check_file(file).map_err(|e| anyhow::anyhow!("--fleet: {e}"))?;
    }
    let mut config = args.engine.gateway_config(given)?;
    config.apps.dirs = args.app_dirs.into_iter().filter(|dir| dir.join(MANIFEST_FILE).is_file()).collect();
    if !args.no_web_demo && web_demo_present {
        config.web_demo = Some(args.web_demo);
    }
    config.admin = Some(AdminConfig {
        data_dir: args.data_dir,
        token: args.admin_token,
        upload: UploadLimits { max_bytes: args.max_upload_mib << 20, read_timeout: config.http.upload_read_timeout },
    });
    config.fleet = args.fleet.map(|file| FleetConfig {
        file,
        cache: args.fleet_cache,
        poll: std::time::Duration::from_millis(args.fleet_poll_ms.max(100)),
        pull: PullLimits {
            max_bytes: args.fleet_max_artifact_mib << 20,
            read_timeout: std::time::Duration::from_secs(args.fleet_read_timeout_secs.max(1)),
        },
    });
    serve(config).await
}
