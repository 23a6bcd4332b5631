use anyhow::Context;
use clap::{Parser, Subcommand};
use edgenn::apps::AppManifest;
use edgenn::apps::manifest::Limits;
use edgenn::http::HttpLimits;
use edgenn::nn::backend::BackendKind;
use edgenn::nn::backend::ort::OrtOptions;
use edgenn::runtime::RuntimeConfig;
use edgenn::{GatewayConfig, serve};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// edgenn: run WebAssembly AI apps at the edge.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve apps over HTTP: the bundled ones, those deployed over the admin API, the demo page.
    Serve(ServeArgs),
    /// Serve one app locally, with no configuration: an app folder or a bare .wasm module.
    Run(RunArgs),
    /// Deploy a local app folder to a running gateway (create or replace).
    Deploy(DeployArgs),
    /// Create a new app from the template.
    New(NewArgs),
}

/// What every serving command shares.
#[derive(clap::Args)]
struct EngineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "EDGENN_LISTEN")]
    listen: SocketAddr,
    /// Directory of model directories (each with a model.toml); repeatable.
    #[arg(long = "models", default_value = "models")]
    model_roots: Vec<PathBuf>,
    /// ONNX Runtime shared library (libonnxruntime.so). Without it only tract serves.
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = ".edgenn/onnxruntime/libonnxruntime.so.1.31.1")]
    ort_library: PathBuf,
    /// ONNX Runtime sessions per model: inferences of one model that may run at once.
    #[arg(long, default_value_t = OrtOptions::default().sessions_per_model)]
    ort_sessions: usize,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long, default_value_t = OrtOptions::default().intra_threads)]
    ort_intra_threads: usize,
    /// Memory the shared model cache may hold, in MiB.
    #[arg(long, default_value_t = 2048)]
    model_cache_mib: u64,
    /// Guest instances alive at once; further requests wait.
    #[arg(long, default_value_t = RuntimeConfig::default().max_instances)]
    max_instances: u32,
    /// Do not load the apps' models at start.
    #[arg(long)]
    no_warm_up: bool,
    /// Requests served at once over all apps and endpoints; beyond it, 503 with Retry-After.
    #[arg(long, env = "EDGENN_MAX_REQUESTS_IN_FLIGHT", default_value_t = HttpLimits::default().max_requests_in_flight)]
    max_requests_in_flight: usize,
    /// Connections open at once; beyond it, new ones wait to be accepted.
    #[arg(long, env = "EDGENN_MAX_CONNECTIONS", default_value_t = HttpLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers before its connection is closed.
    #[arg(long, env = "EDGENN_HEADER_TIMEOUT_SECS", default_value_t = HttpLimits::default().header_read_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Seconds a client has to send an app request's body (408 beyond it).
    #[arg(long, env = "EDGENN_BODY_TIMEOUT_SECS", default_value_t = HttpLimits::default().body_read_timeout.as_secs())]
    body_timeout_secs: u64,
    /// Seconds an admin upload may take to arrive (408 beyond it).
    #[arg(long, env = "EDGENN_UPLOAD_TIMEOUT_SECS", default_value_t = HttpLimits::default().upload_read_timeout.as_secs())]
    upload_timeout_secs: u64,
    /// Shut down when standard input closes (for supervisors and tests that own the process).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// App directory (with an edgenn.toml) to deploy at start; repeatable.
    #[arg(long = "app", default_values = ["guests/classify", "guests/predict", "guests/digits"])]
    app_dirs: Vec<PathBuf>,
    /// Where apps deployed over the admin API are kept (they come back after a restart).
    #[arg(long, default_value = ".edgenn/data", env = "EDGENN_DATA_DIR")]
    data_dir: PathBuf,
    /// Bearer token for the admin API (/admin/...). Without one the admin API answers 401.
    #[arg(long, env = "EDGENN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest admin upload (module + bundled models), in MiB.
    #[arg(long, default_value_t = 512)]
    max_upload_mib: usize,
    /// The demo page's directory, served at `/`.
    #[arg(long, default_value = "web-demo")]
    web_demo: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
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
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct DeployArgs {
    /// The app folder (with edgenn.toml and its built module).
    app: PathBuf,
    /// The gateway, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    to: String,
    /// The gateway's admin token.
    #[arg(long, env = "EDGENN_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(clap::Args)]
struct NewArgs {
    /// The app's name (a-z, 0-9, '-', '_').
    name: String,
    /// Where to create it (default: ./<name>).
    #[arg(long)]
    path: Option<PathBuf>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn gateway_config(engine: EngineArgs) -> GatewayConfig {
    let ort_library = engine.ort_library.is_file().then_some(engine.ort_library.clone());
    if ort_library.is_none() {
        tracing::warn!(path = %engine.ort_library.display(), "ONNX Runtime library not found");
    }
    if engine.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            tracing::info!("standard input closed: exiting");
            std::process::exit(0);
        });
    }
    GatewayConfig {
        listen: engine.listen,
        model_roots: engine.model_roots.into_iter().filter(|root| root.is_dir()).collect(),
        model_files: Vec::new(),
        app_dirs: Vec::new(),
        app_manifests: Vec::new(),
        ort_library,
        ort: OrtOptions { sessions_per_model: engine.ort_sessions, intra_threads: engine.ort_intra_threads },
        model_cache_bytes: engine.model_cache_mib << 20,
        runtime: RuntimeConfig { max_instances: engine.max_instances, ..RuntimeConfig::default() },
        warm_up: !engine.no_warm_up,
        web_demo: None,
        data_dir: None,
        admin_token: None,
        max_upload_bytes: 0,
        http: HttpLimits {
            header_read_timeout: Duration::from_secs(engine.header_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(engine.body_timeout_secs.max(1)),
            upload_read_timeout: Duration::from_secs(engine.upload_timeout_secs.max(1)),
            max_requests_in_flight: engine.max_requests_in_flight.max(1),
            max_connections: engine.max_connections.max(1),
            ..HttpLimits::default()
        },
    }
}

/// `edgenn run app.wasm`: a manifest made from the command line.
fn manifest_for_module(wasm: &Path, models: &[(String, String)], config: &[(String, String)]) -> anyhow::Result<AppManifest> {
    let stem = wasm.file_stem().and_then(|s| s.to_str()).unwrap_or("app");
    let name: String =
        stem.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let manifest = AppManifest {
        name,
        routes: Vec::new(),
        wasm: wasm.canonicalize().with_context(|| format!("{}", wasm.display()))?,
        models: models.iter().map(|(name, _)| name.clone()).collect(),
        bundled_models: Vec::new(),
        limits: Limits::default(),
        config: config.iter().cloned().collect(),
    };
    // Checked exactly as a manifest file would be.
    AppManifest::parse(&toml::to_string(&manifest)?).map_err(|e| anyhow::anyhow!("{e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,edgenn=info")))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let mut config = gateway_config(args.engine);
            config.app_dirs = args.app_dirs.into_iter().filter(|dir| dir.join("edgenn.toml").is_file()).collect();
            config.web_demo = args.web_demo.join("index.html").is_file().then_some(args.web_demo);
            config.data_dir = Some(args.data_dir);
            config.admin_token = args.admin_token;
            config.max_upload_bytes = args.max_upload_mib << 20;
            serve(config).await
        }
        Command::Run(args) => {
            let mut config = gateway_config(args.engine);
            config.model_files =
                args.models.iter().map(|(name, path)| (name.clone(), PathBuf::from(path), args.backend)).collect();
            if args.app.is_dir() {
                config.app_dirs = vec![args.app];
            } else {
                let manifest = manifest_for_module(&args.app, &args.models, &args.config)?;
                let dir = std::env::current_dir()?;
                config.app_manifests = vec![(manifest, dir)];
            }
            serve(config).await
        }
        Command::Deploy(args) => {
            let answer = edgenn::client::deploy(&args.app, &args.to, &args.token)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        Command::New(args) => {
            let path = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
            edgenn::template::create(&args.name, &path)?;
            println!("created {} from the edgenn app template; see {}/README.md", args.name, path.display());
            Ok(())
        }
    }
}
