//! The sandbox: one wasmtime `Engine` with the pooling allocator, modules compiled once and
//! pre-linked (`InstancePre`), and a fresh `Store` + instance for every request, with a memory
//! cap and a deadline.
//!
//! The memory cap covers linear memory (a `ResourceLimiter`) and the tensors wasi-nn keeps on
//! the host for the instance, against one budget. The deadline covers the whole run: guest code
//! by epoch interruption, sleeps by our `poll_oneoff` ([`poll`]), inference by the wasi-nn host
//! ([`crate::nn::witx`]) and its backends.
//!
//! `Runtime::run` is synchronous (WASI preview1 and wasi-nn witx host calls are): callers run it
//! on a blocking thread, never on the async executor.

pub mod component;
pub mod outbound;
pub mod poll;
pub mod wagi;

use crate::metrics::Metrics;
use crate::nn::limits::{Kill, MemoryBudget};
use crate::nn::witx::{NnView, WitxNn};
use crate::nn::{ModelAccess, ModelStore};
use bytes::Bytes;
use component::ComponentState;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wagi::{GuestRequest, GuestResponse, ResponseError};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances alive at once (pool slots). Requests beyond it wait for a slot.
    pub max_instances: u32,
    /// The largest linear memory any app may be given, in bytes.
    pub max_memory_bytes: usize,
    /// Epoch tick: the granularity of deadlines.
    pub epoch_tick: Duration,
    /// Largest response a guest may write.
    pub max_output_bytes: usize,
    /// Linear memory kept resident (zeroed with memset, not madvise) when an instance's slot
    /// is reused: the next request then takes no page faults on it.
    pub keep_resident_bytes: usize,
    /// Where compiled code is kept on disk (wasmtime's cache: entries keyed by the binary's
    /// hash, the engine's settings and wasmtime's version), so a restart does not compile a
    /// 20 MB component again. `None`: compile every time.
    pub compile_cache: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_bytes: 1 << 30,
            epoch_tick: Duration::from_millis(5),
            max_output_bytes: 16 << 20,
            // Measured (benches/RESULTS.md): a guest handed a 600 KB tensor does its I/O in
            // 0.15-0.2 ms with 4 MiB kept resident, 0.45-0.6 ms with none.
            keep_resident_bytes: 4 << 20,
            compile_cache: None,
        }
    }
}

/// What one app's instances may do and use.
#[derive(Debug, Clone)]
pub struct AppPolicy {
    /// Used as `argv[0]` and in logs.
    pub name: String,
    pub memory_bytes: usize,
    pub deadline: Duration,
    /// Models `load_by_name` may resolve.
    pub models: Arc<ModelAccess>,
    /// `EDGENN_CONFIG_*` variables.
    pub config_env: Arc<[(String, String)]>,
    /// Origins a component may send HTTP requests to (none for WAGI modules, which have no
    /// network at all).
    pub outbound: Arc<[outbound::AllowedOrigin]>,
}

/// A wasmtime error as a standard error with its chain (wasmtime's error type is `anyhow`'s).
pub type WasmError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not a valid WebAssembly module")]
    Compile(#[source] WasmError),
    #[error("the module cannot run here")]
    Link(#[source] WasmError),
    #[error("the module exports no `_start` function (build it as a wasm32-wasip1 command)")]
    NoStart,
    #[error("the component imports what the gateway does not offer (it offers wasi:http/proxy, WASI 0.2 and wasi:nn)")]
    ComponentImports(#[source] WasmError),
    #[error("the component does not export wasi:http/incoming-handler (target the wasi:http/proxy world)")]
    NotAProxy(#[source] WasmError),
    #[error("the component returned without setting a response")]
    NoResponse,
    #[error("the component answered with an error: {0}")]
    ErrorResponse(String),
    #[error("the app ran past its deadline of {} ms", .0.as_millis())]
    DeadlineExceeded(Duration),
    #[error("the app exceeded its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(usize),
    #[error("the app failed")]
    Trap(#[source] WasmError),
    #[error("the app exited with status {0} without a response")]
    Exit(i32),
    #[error("cannot start the app")]
    Instantiate(#[source] WasmError),
    #[error("the app's response is larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// A guest compiled and linked once, instantiated per request: a WAGI module or a
/// `wasi:http/proxy` component.
#[derive(Clone)]
pub enum GuestModule {
    Wagi(InstancePre<GuestState>),
    Component(ProxyPre<ComponentState>),
}

impl GuestModule {
    /// `wagi` or `component`, for app listings.
    pub fn abi(&self) -> &'static str {
        match self {
            GuestModule::Wagi(_) => "wagi",
            GuestModule::Component(_) => "component",
        }
    }
}

/// One request's outcome with the time spent setting up the sandbox.
#[derive(Debug)]
pub struct GuestRun {
    pub response: GuestResponse,
    /// Store + WASI context + instantiation, up to the guest's first instruction.
    pub setup: Duration,
    pub total: Duration,
}

pub struct GuestState {
    wasi: WasiP1Ctx,
    nn: WitxNn,
    budget: MemoryBudget,
    deadline: Instant,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    components: wasmtime::component::Linker<ComponentState>,
    models: Arc<ModelStore>,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    /// What components' outbound HTTPS trusts, read from the machine once.
    outbound_tls: outbound::TlsRoots,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig, models: Arc<ModelStore>, metrics: Arc<Metrics>) -> wasmtime::Result<Self> {
        // A component is several core instances (its modules, the preview1 adapter, shims):
        // the pool has room for each instance slot to be a component of up to 16 of them.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 16)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 8)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .table_elements(100_000)
            .max_memory_size(config.max_memory_bytes)
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .table_keep_resident(64 << 10)
            // With the kernel's PAGEMAP_SCAN (Linux 6.7+) a slot being reused resets only the
            // pages the last request wrote, instead of memsetting all it kept resident
            // (benches/RESULTS.md (g): a quarter to a third off a small request).
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut engine_config = Config::new();
        engine_config.epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &config.compile_cache {
            std::fs::create_dir_all(dir)?;
            let mut cache = CacheConfig::new();
            // wasmtime's cache wants an absolute directory; a relative one is the current one's.
            cache.with_directory(std::path::absolute(dir)?);
            engine_config.cache(Some(Cache::new(cache)?));
        }
        // `perf` can name guest functions when the JIT writes its map (/tmp/perf-<pid>.map).
        if std::env::var_os("EDGENN_WASM_PERFMAP").is_some() {
            engine_config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&engine_config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut GuestState| &mut state.wasi)?;
        poll::shadow_poll_oneoff(&mut linker, |state: &GuestState| state.deadline)?;
        crate::nn::witx::add_to_linker(&mut linker, |state: &mut GuestState| NnView {
            nn: &mut state.nn,
            budget: &mut state.budget,
        })?;

        let components = component::linker(&engine)?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        let outbound_tls = outbound::TlsRoots::from_machine();
        Ok(Self { engine, linker, components, models, config, metrics, outbound_tls, _ticker: ticker })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn models(&self) -> &Arc<ModelStore> {
        &self.models
    }

    /// Compiles and links a guest, telling modules and components apart by the binary: a
    /// `wasm32-wasip1` command module exporting `_start`, or a `wasi:http/proxy` component,
    /// importing only what the host offers.
    pub fn compile(&self, wasm: &[u8]) -> Result<GuestModule, RuntimeError> {
        if component::is_component(wasm) {
            let compiled =
                wasmtime::component::Component::new(&self.engine, wasm).map_err(|e| RuntimeError::Compile(e.into()))?;
            return Ok(GuestModule::Component(component::prepare(&self.components, &compiled)?));
        }
        let module = Module::new(&self.engine, wasm).map_err(|e| RuntimeError::Compile(e.into()))?;
        match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(_)) => {}
            _ => return Err(RuntimeError::NoStart),
        }
        let pre = self.linker.instantiate_pre(&module).map_err(|e| RuntimeError::Link(e.into()))?;
        Ok(GuestModule::Wagi(pre))
    }

    /// The store's epoch deadline for an app: its deadline in ticks, rounded up.
    fn deadline_ticks(&self, policy: &AppPolicy) -> u64 {
        let ticks = policy.deadline.as_nanos().div_ceil(self.config.epoch_tick.as_nanos().max(1)) + 1;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Runs one request in a fresh instance.
    pub fn run(
        &self,
        module: &GuestModule,
        policy: &AppPolicy,
        request: GuestRequest,
    ) -> Result<GuestRun, RuntimeError> {
        match module {
            GuestModule::Wagi(pre) => self.run_wagi(pre, policy, request),
            GuestModule::Component(pre) => self.run_component(pre, policy, request),
        }
    }

    fn run_wagi(
        &self,
        pre: &InstancePre<GuestState>,
        policy: &AppPolicy,
        request: GuestRequest,
    ) -> Result<GuestRun, RuntimeError> {
        let started = Instant::now();
        let stdout = MemoryOutputPipe::new(self.config.max_output_bytes);
        let stderr = MemoryOutputPipe::new(16 << 10);
        let env = wagi::environment(&request, &policy.config_env);
        let request_id = request.id.clone();
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(request.body))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&env)
            .arg(&policy.name)
            .build_p1();
        let registry = self.models.registry(policy.models.clone());
        let deadline = started + policy.deadline;
        let nn = WitxNn::new(registry, deadline, self.metrics.clone());
        let memory_bytes = policy.memory_bytes.min(self.config.max_memory_bytes);
        let state = GuestState { wasi, nn, budget: MemoryBudget::new(memory_bytes), deadline };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.budget);
        store.set_epoch_deadline(self.deadline_ticks(policy));
        store.epoch_deadline_trap();

        self.metrics.instantiations.inc();
        let instance = pre.instantiate(&mut store).map_err(|e| {
            if store.data().budget.denied {
                self.metrics.memory_kills.inc();
                RuntimeError::MemoryLimit(memory_bytes)
            } else {
                RuntimeError::Instantiate(e.into())
            }
        })?;
        let start =
            instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(|e| RuntimeError::Link(e.into()))?;
        let setup = started.elapsed();
        let result = start.call(&mut store, ());

        let output = stdout.contents();
        if let Err(error) = result {
            let exit = error.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0);
            match exit {
                Some(0) => {}
                // A CGI program may exit non-zero after writing a complete response.
                Some(code) if wagi::parse_response(output.clone()).is_ok() => {
                    tracing::debug!(app = %policy.name, code, "guest exited non-zero after responding");
                }
                _ => {
                    let budget = &store.data().budget;
                    return Err(self.classify(
                        policy,
                        &request_id,
                        budget.denied,
                        budget.limit,
                        error,
                        exit,
                        &stderr.contents(),
                    ));
                }
            }
        }
        if output.len() >= self.config.max_output_bytes {
            return Err(RuntimeError::OutputTooLarge(self.config.max_output_bytes));
        }
        let response =
            wagi::parse_response(output).inspect_err(|_| log_stderr(policy, &request_id, &stderr.contents()))?;
        Ok(GuestRun { response, setup, total: started.elapsed() })
    }

    /// What a failed run was: a deadline or memory kill, or the guest's own failure. `denied`
    /// says whether the memory budget refused anything during the run.
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &self,
        policy: &AppPolicy,
        request: &str,
        denied: bool,
        limit: usize,
        error: wasmtime::Error,
        exit: Option<i32>,
        stderr: &Bytes,
    ) -> RuntimeError {
        let kill = error.downcast_ref::<Kill>().copied();
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) || kill == Some(Kill::Deadline) {
            self.metrics.deadline_kills.inc();
            return RuntimeError::DeadlineExceeded(policy.deadline);
        }
        if denied || kill == Some(Kill::Memory) {
            self.metrics.memory_kills.inc();
            return RuntimeError::MemoryLimit(limit);
        }
        self.metrics.traps.inc();
        log_stderr(policy, request, stderr);
        match exit {
            Some(code) => RuntimeError::Exit(code),
            None => RuntimeError::Trap(error.into()),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// The guest's stderr as one field of one record: data, never lines of the gateway's log. It is
/// written escaped (`\n`, `\u{1b}`, quotes), so a guest that prints newlines and terminal
/// escapes cannot forge records that look like the gateway's own, nor recolour a terminal.
fn log_stderr(policy: &AppPolicy, request: &str, stderr: &Bytes) {
    if !stderr.is_empty() {
        let text = String::from_utf8_lossy(stderr);
        tracing::warn!(app = %policy.name, request, stderr = ?text.trim_end(), "guest stderr");
    }
}

/// Linear memory counts against the same budget as what wasi-nn holds on the host; a refused
/// growth is remembered, so that the trap that follows (a Rust guest aborts on allocation
/// failure) is reported as a memory-limit kill.
impl ResourceLimiter for MemoryBudget {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow_linear(current, desired))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Advances the engine's epoch every tick so that stores past their deadline trap.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("edgenn-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("the epoch thread starts");
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
