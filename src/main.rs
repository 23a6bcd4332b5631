use clap::{Parser, Subcommand};
use edgenn::nn::backend::ort::OrtOptions;
use edgenn::runtime::RuntimeConfig;
use edgenn::{GatewayConfig, serve};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Serve apps over HTTP.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "EDGENN_LISTEN")]
    listen: SocketAddr,
    /// Directory of model directories (each with a model.toml); repeatable.
    #[arg(long = "models", default_value = "models")]
    model_roots: Vec<PathBuf>,
    /// App directory (with an edgenn.toml) to deploy at start; repeatable.
    #[arg(long = "app", default_values = ["guests/classify", "guests/predict"])]
    app_dirs: Vec<PathBuf>,
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
    /// Do not load the apps' models at start.
    #[arg(long)]
    no_warm_up: bool,
    /// Shut down when standard input closes (for supervisors and tests that own the process).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,edgenn=info")))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let ort_library = args.ort_library.is_file().then_some(args.ort_library.clone());
            if ort_library.is_none() {
                tracing::warn!(path = %args.ort_library.display(), "ONNX Runtime library not found");
            }
            let config = GatewayConfig {
                listen: args.listen,
                model_roots: args.model_roots,
                app_dirs: args.app_dirs,
                ort_library,
                ort: OrtOptions { sessions_per_model: args.ort_sessions, intra_threads: args.ort_intra_threads },
                model_cache_bytes: args.model_cache_mib << 20,
                runtime: RuntimeConfig {
                    max_instances: args.max_instances,
                    epoch_tick: Duration::from_millis(5),
                    ..RuntimeConfig::default()
                },
                warm_up: !args.no_warm_up,
                web_demo: args.web_demo.join("index.html").is_file().then_some(args.web_demo),
                data_dir: Some(args.data_dir),
                admin_token: args.admin_token,
                max_upload_bytes: args.max_upload_mib << 20,
            };
            if args.exit_on_stdin_eof {
                std::thread::spawn(|| {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    tracing::info!("standard input closed: exiting");
                    std::process::exit(0);
                });
            }
            serve(config).await
        }
    }
}
