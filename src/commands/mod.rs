//! The command line: `edgenn serve`, `run`, `deploy`, `model`, `push`/`pull`, `new` and
//! `componentize`, one file each, with what they share (the options of a serving gateway) here.

pub mod client;
pub mod componentize;
pub mod deploy;
pub mod model;
pub mod new;
pub mod push;
pub mod run;
pub mod serve;
pub mod template;

use crate::gateway::{AppsConfig, GatewayConfig, ModelsConfig};
use crate::http::HttpLimits;
use crate::nn::backend::ort::OrtOptions;
use crate::runtime::RuntimeConfig;
use anyhow::bail;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Serve apps over HTTP: the bundled ones, those deployed over the admin API, the demo page.
    Serve(serve::ServeArgs),
    /// Serve one app locally, with no configuration: an app folder or a bare .wasm module.
    Run(run::RunArgs),
    /// Deploy a local app folder to a running gateway (create or replace).
    Deploy(deploy::DeployArgs),
    /// Manage the shared models of a running gateway (`edgenn model push ./models/x`).
    Model(model::ModelArgs),
    /// Push an app or model folder to an OCI registry, as a content-addressed artifact.
    Push(push::PushArgs),
    /// Pull an app or model from an OCI registry into a folder (every blob checked by digest).
    Pull(push::PullArgs),
    /// Create a new app from the template.
    New(new::NewArgs),
    /// Turn a wasm32-wasip1 module with wit-bindgen exports into a wasi:http/proxy component.
    Componentize(componentize::ComponentizeArgs),
    /// Load one model under a memory limit and print what it took (the gateway runs this in a
    /// child process before a model enters it).
    #[command(name = "probe-load", hide = true)]
    ProbeLoad(model::ProbeLoadArgs),
}

/// Parses the command line and runs the command.
pub async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,edgenn=info")))
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log written to a file or a pipe stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = Given(matches.subcommand().map(|(_, m)| m));
    match cli.command {
        Command::Serve(args) => serve::execute(args, &given).await,
        Command::Run(args) => run::execute(args, &given).await,
        Command::Deploy(args) => deploy::execute(args),
        Command::Model(args) => model::execute(args),
        Command::Push(args) => push::push(args).await,
        Command::Pull(args) => push::pull(args).await,
        Command::New(args) => new::execute(args),
        Command::Componentize(args) => componentize::execute(args),
        Command::ProbeLoad(args) => model::probe_load(args),
    }
}

/// Which options the user gave (on the command line or in the environment) rather than left
/// at their defaults: a path the user names must exist, a default one may be absent.
pub struct Given<'a>(Option<&'a ArgMatches>);

impl Given<'_> {
    pub fn explicitly(&self, id: &str) -> bool {
        self.0.and_then(|m| m.value_source(id)).is_some_and(|source| source != ValueSource::DefaultValue)
    }
}

/// What every serving command shares. Every option can also come from the environment.
#[derive(clap::Args)]
pub struct EngineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "EDGENN_LISTEN")]
    listen: SocketAddr,
    /// Directory of model directories (each with a model.toml); repeatable.
    #[arg(long = "models", default_value = "models", env = "EDGENN_MODELS", value_delimiter = ',')]
    model_roots: Vec<PathBuf>,
    /// ONNX Runtime shared library (libonnxruntime.so). Without it only tract serves.
    #[arg(long, env = "EDGENN_ORT_LIBRARY", default_value = ".edgenn/onnxruntime/libonnxruntime.so.1.31.1")]
    ort_library: PathBuf,
    /// ONNX Runtime sessions per model: inferences of one model that may run at once.
    #[arg(long, env = "EDGENN_ORT_SESSIONS", default_value_t = OrtOptions::default().sessions_per_model)]
    ort_sessions: usize,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long, env = "EDGENN_ORT_INTRA_THREADS", default_value_t = OrtOptions::default().intra_threads)]
    ort_intra_threads: usize,
    /// Memory the shared model cache may hold, in MiB (each model weighed by what its load
    /// took, measured).
    #[arg(long, env = "EDGENN_MODEL_CACHE_MIB", default_value_t = 2048)]
    model_cache_mib: u64,
    /// Memory one model may take while it loads, in MiB: every model is loaded first in a
    /// child process held to it (422 or a load failure beyond).
    #[arg(long, env = "EDGENN_MAX_MODEL_LOAD_MIB", default_value_t = 1024)]
    max_model_load_mib: u64,
    /// Guest instances alive at once; further requests wait.
    #[arg(long, env = "EDGENN_MAX_INSTANCES", default_value_t = RuntimeConfig::default().max_instances)]
    max_instances: u32,
    /// Where compiled apps are kept on disk, so that a restart does not compile them again
    /// (keyed by the module's hash and the engine's settings).
    #[arg(long, env = "EDGENN_COMPILE_CACHE", default_value = ".edgenn/compiled")]
    compile_cache: PathBuf,
    /// Keep no compiled code on disk: compile every app at every start.
    #[arg(long, env = "EDGENN_NO_COMPILE_CACHE", conflicts_with = "compile_cache")]
    no_compile_cache: bool,
    /// Do not load the apps' models at start.
    #[arg(long, env = "EDGENN_NO_WARM_UP")]
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
    /// Seconds a client has to send an app or /v2 request's body (408 beyond it).
    #[arg(long, env = "EDGENN_BODY_TIMEOUT_SECS", default_value_t = HttpLimits::default().body_read_timeout.as_secs())]
    body_timeout_secs: u64,
    /// Longest wait, in seconds, between two reads of an app or /v2 request's body (408
    /// beyond it): the rate a body must keep.
    #[arg(long, env = "EDGENN_BODY_IDLE_TIMEOUT_SECS", default_value_t = HttpLimits::default().body_idle_timeout.as_secs())]
    body_idle_timeout_secs: u64,
    /// App and /v2 request bodies one client address may be sending at once (429 beyond it).
    #[arg(long, env = "EDGENN_MAX_BODIES_PER_CLIENT", default_value_t = HttpLimits::default().max_bodies_per_client)]
    max_bodies_per_client: usize,
    /// Connections one client address may hold open at once; beyond it, new ones are closed.
    #[arg(long, env = "EDGENN_MAX_CONNECTIONS_PER_CLIENT", default_value_t = HttpLimits::default().max_connections_per_client)]
    max_connections_per_client: usize,
    /// MiB all app and /v2 request bodies may hold at once, being read or waiting for their
    /// request to finish (503 beyond it).
    #[arg(long, env = "EDGENN_MAX_BUFFERED_BODY_MIB", default_value_t = HttpLimits::default().max_buffered_body_bytes >> 20)]
    max_buffered_body_mib: usize,
    /// Seconds an admin upload may take to arrive (408 beyond it).
    #[arg(long, env = "EDGENN_UPLOAD_TIMEOUT_SECS", default_value_t = HttpLimits::default().upload_read_timeout.as_secs())]
    upload_timeout_secs: u64,
    /// Shut down when standard input closes (for supervisors and tests that own the process).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

/// For supervisors and tests that own the process: exit when standard input closes.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        tracing::info!("standard input closed: exiting");
        std::process::exit(0);
    });
}

impl EngineArgs {
    /// The gateway configuration these options give, with no apps, no demo page and no admin
    /// API yet. A path the user named that does not exist is an error. Call it after checking
    /// the command's own options: with `--exit-on-stdin-eof` it starts watching stdin.
    fn gateway_config(self, given: &Given<'_>) -> anyhow::Result<GatewayConfig> {
        for root in &self.model_roots {
            if given.explicitly("model_roots") && !root.is_dir() {
                bail!("--models {}: no such directory", root.display());
            }
        }
        let ort_library = if self.ort_library.is_file() {
            Some(self.ort_library.clone())
        } else if given.explicitly("ort_library") {
            bail!("--ort-library {}: no such file", self.ort_library.display());
        } else {
            tracing::warn!(path = %self.ort_library.display(), "ONNX Runtime library not found");
            None
        };
        if self.exit_on_stdin_eof {
            exit_when_stdin_closes();
        }
        Ok(GatewayConfig {
            listen: self.listen,
            models: ModelsConfig {
                roots: self.model_roots.into_iter().filter(|root| root.is_dir()).collect(),
                files: Vec::new(),
                ort_library,
                ort: OrtOptions { sessions_per_model: self.ort_sessions, intra_threads: self.ort_intra_threads },
                cache_bytes: self.model_cache_mib << 20,
                warm_up: !self.no_warm_up,
                loader: Some(std::env::current_exe()?),
                max_load_bytes: self.max_model_load_mib.max(1) << 20,
            },
            apps: AppsConfig::default(),
            runtime: RuntimeConfig {
                max_instances: self.max_instances,
                compile_cache: (!self.no_compile_cache).then_some(self.compile_cache),
                ..RuntimeConfig::default()
            },
            http: HttpLimits {
                header_read_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
                body_read_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
                body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs.max(1)),
                max_bodies_per_client: self.max_bodies_per_client.max(1),
                max_connections_per_client: self.max_connections_per_client.max(1),
                max_buffered_body_bytes: self.max_buffered_body_mib.max(1) << 20,
                upload_read_timeout: Duration::from_secs(self.upload_timeout_secs.max(1)),
                max_requests_in_flight: self.max_requests_in_flight.max(1),
                max_connections: self.max_connections.max(1),
                ..HttpLimits::default()
            },
            web_demo: None,
            admin: None,
            fleet: None,
        })
    }
}
