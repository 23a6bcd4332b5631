//! Components beside WAGI modules, measured side by side in one run:
//!
//! (g) per-request set-up of a Rust component (store + WASI 0.2 + wasi-http + wasi-nn context +
//!     instantiation from the pre-linked component, to the guest's first instruction) next to a
//!     WAGI module's (p50; goal <= 20 us);
//! (h) type-ahead as a component vs the same handler as a WAGI module, same model, over HTTP at
//!     1 and 8 clients (throughput ratio; goal >= 0.95), runs interleaved;
//! (i) the Python and JavaScript digits components: size, compile time at deploy, per-request
//!     p50/p99, and restart-to-serving with and without the compiled-code cache.
//!
//! Run: `cargo bench --bench components` (after `scripts/setup.sh`, which builds the components).
//! `EDGENN_BENCH_SECONDS` sets the duration of each HTTP run (default 10).
//!
//! `instructions-wagi` and `instructions-component` (named alone) run `EDGENN_BENCH_RUNS`
//! type-ahead requests of one build in-process and nothing else, for
//! `valgrind --tool=callgrind`: instructions, unlike seconds, do not move with the machine's
//! load. Both compile both builds, so the difference of two runs' totals over the runs is
//! what a component request costs beyond a WAGI one.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Gateway, agent, component_wasm, guest_wasm, json_of, multipart_parts, repo};
use edgenn::metrics::Metrics;
use edgenn::nn::backend::Backends;
use edgenn::nn::backend::ort::{OrtBackend, OrtOptions};
use edgenn::nn::backend::tract::TractBackend;
use edgenn::nn::{ModelAccess, ModelStore};
use edgenn::runtime::wagi::GuestRequest;
use edgenn::runtime::{AppPolicy, GuestModule, Runtime, RuntimeConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

/// A runtime on both backends with the bundled models, and a policy that may load them all:
/// one per process, as ONNX Runtime allows one environment per process.
fn in_process() -> (Arc<Runtime>, Arc<AppPolicy>) {
    static SHARED: std::sync::OnceLock<(Arc<Runtime>, Arc<AppPolicy>)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| start_in_process(RuntimeConfig::default())).clone()
}

fn start_in_process(config: RuntimeConfig) -> (Arc<Runtime>, Arc<AppPolicy>) {
    let metrics = Arc::new(Metrics::new());
    let mut backends = Backends::default();
    let ort = OrtBackend::new(&repo().join(".edgenn/onnxruntime/libonnxruntime.so.1.31.1"), OrtOptions::default())
        .expect("ONNX Runtime");
    backends.register(ort).register(TractBackend);
    let store = Arc::new(ModelStore::new(backends, 1 << 30, metrics.clone()));
    store.register_all(&repo().join("models")).expect("models");
    let runtime = Arc::new(Runtime::new(config, store, metrics).expect("runtime"));
    let policy = Arc::new(AppPolicy {
        name: "bench".into(),
        memory_bytes: 256 << 20,
        deadline: Duration::from_secs(30),
        models: Arc::new(ModelAccess::everything()),
        config_env: Arc::from(Vec::new()),
        outbound: Arc::from(Vec::new()),
    });
    (runtime, policy)
}

/// (g): set-up times, in-process, for a module and a component alike.
fn setup() {
    let (runtime, policy) = in_process();
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let guests = [
        ("WAGI module (noop)", std::fs::read(guest_wasm("noop")).unwrap()),
        ("component (component-probe, echo)", std::fs::read(component_wasm("component-probe")).unwrap()),
    ];
    for (name, wasm) in guests {
        let module = Arc::new(runtime.compile(&wasm).expect("compiles"));
        let (runtime, policy) = (runtime.clone(), policy.clone());
        let worker = tokio.spawn_blocking(move || {
            let request = GuestRequest { method: "GET".into(), script_name: "/echo".into(), ..GuestRequest::default() };
            let mut setups = Vec::new();
            let mut totals = Vec::new();
            for i in 0..2200 {
                let run = runtime.run(&module, &policy, request.clone()).expect("runs");
                if i >= 200 {
                    setups.push(run.setup.as_secs_f64() * 1e6);
                    totals.push(run.total.as_secs_f64() * 1e6);
                }
            }
            (setups, totals)
        });
        let (mut setups, mut totals) = tokio.block_on(worker).expect("bench thread");
        println!(
            "(g) {name}: set-up p50 {:.1} us, p99 {:.1} us; whole request p50 {:.1} us",
            percentile(&mut setups, 0.5),
            percentile(&mut setups, 0.99),
            percentile(&mut totals, 0.5)
        );
    }
}

/// The type-ahead app compiled twice: the WAGI module and the component.
fn type_ahead_builds(runtime: &Runtime) -> [GuestModule; 2] {
    [guest_wasm("predict"), component_wasm("predict-component")]
        .map(|path| runtime.compile(&std::fs::read(path).unwrap()).unwrap())
}

/// The request the in-process type-ahead runs send (the HTTP runs send the same query).
fn type_ahead_request() -> GuestRequest {
    GuestRequest {
        method: "GET".into(),
        script_name: "/v1/predict".into(),
        query: "text=she%20was%20not%20acq&k=5".into(),
        ..GuestRequest::default()
    }
}

/// The type-ahead request in-process, WAGI module against component, interleaved: what the
/// HTTP edge does not add.
fn type_ahead_in_process() {
    let (runtime, policy) = in_process();
    let [wagi, component] = type_ahead_builds(&runtime).map(Arc::new);
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let worker = tokio.spawn_blocking(move || {
        let request = type_ahead_request();
        let time = |module: &GuestModule| {
            let run = runtime.run(module, &policy, request.clone()).expect("runs");
            assert_eq!(run.response.status, 200);
            run.total.as_secs_f64() * 1e3
        };
        // Alternating the two builds request by request, then each alone: instance slots keep
        // the memory image of the module they last ran, so alternating costs what a gateway
        // serving many apps pays, and alone is the best case.
        let (mut wagi_mixed, mut component_mixed) = (Vec::new(), Vec::new());
        for i in 0..1200 {
            let (w, c) = (time(&wagi), time(&component));
            if i >= 200 {
                wagi_mixed.push(w);
                component_mixed.push(c);
            }
        }
        // Alone, the CPU time too: a request runs on this one thread (wasmtime, the guest and
        // ONNX Runtime), and CPU time moves less with the machine's load than wall time.
        let alone = |module: &GuestModule| {
            for _ in 0..200 {
                time(module);
            }
            let cpu_before = thread_cpu_time();
            let times = (0..1000).map(|_| time(module)).collect::<Vec<f64>>();
            let cpu =
                cpu_before.zip(thread_cpu_time()).map(|(before, after)| (after - before).as_secs_f64() * 1e3 / 1000.0);
            (times, cpu)
        };
        let ((wagi_alone, wagi_cpu), (component_alone, component_cpu)) = (alone(&wagi), alone(&component));
        ([wagi_mixed, component_mixed, wagi_alone, component_alone], [wagi_cpu, component_cpu])
    });
    let ([mut wagi_mixed, mut component_mixed, mut wagi_alone, mut component_alone], [wagi_cpu, component_cpu]) =
        tokio.block_on(worker).expect("bench thread");
    let ms = |cpu: Option<f64>| cpu.map_or("-".to_string(), |cpu| format!("{cpu:.3} ms"));
    println!(
        "(h') type-ahead in-process, whole request p50: alternating WAGI {:.3} ms, component {:.3} ms; each alone WAGI {:.3} ms, component {:.3} ms; CPU a request alone (the bench thread) WAGI {}, component {}",
        percentile(&mut wagi_mixed, 0.5),
        percentile(&mut component_mixed, 0.5),
        percentile(&mut wagi_alone, 0.5),
        percentile(&mut component_alone, 0.5),
        ms(wagi_cpu),
        ms(component_cpu)
    );
}

/// The CPU time this thread has run, from the scheduler's own count
/// (`/proc/thread-self/schedstat`, nanoseconds); `None` where the kernel does not offer it.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// `runs` type-ahead requests of one build, in-process, for an instruction count (see the
/// top of this file). The pool is small because valgrind cannot reserve the default one's
/// address space (64 slots of 4 GiB memories).
fn type_ahead_instructions(component: bool, runs: usize) {
    let config = RuntimeConfig { max_instances: 2, ..RuntimeConfig::default() };
    let (runtime, policy) = start_in_process(config);
    let [wagi, component_module] = type_ahead_builds(&runtime);
    let module = Arc::new(if component { component_module } else { wagi });
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let worker = tokio.spawn_blocking(move || {
        let request = type_ahead_request();
        for _ in 0..runs {
            let run = runtime.run(&module, &policy, request.clone()).expect("runs");
            assert_eq!(run.response.status, 200);
        }
    });
    tokio.block_on(worker).expect("bench thread");
    println!("(h'') {runs} type-ahead requests, {}", if component { "component" } else { "WAGI" });
}

/// `common::load` with JSON bodies.
fn load(gateway: &Gateway, path: &str, body: Option<&[u8]>, clients: usize, duration: Duration) -> (Vec<f64>, f64) {
    common::load(gateway, path, "application/json", body.unwrap_or_default(), clients, duration)
}

fn at(latencies: &[f64], p: f64) -> f64 {
    latencies[((latencies.len() - 1) as f64 * p).round() as usize]
}

/// (h): the two type-ahead builds, runs interleaved so that both see the same machine.
fn type_ahead(seconds: u64) {
    let gateway = Gateway::start(&[Path::new("guests/predict"), Path::new("guests/predict-component")], &[]);
    let query = "?text=she%20was%20not%20acq&k=5";
    let paths = [("WAGI", format!("/v1/predict{query}")), ("component", format!("/v1/predict-component{query}"))];
    for (_, path) in &paths {
        let _ = load(&gateway, path, None, 1, Duration::from_millis(500));
    }
    println!("| type-ahead | clients | requests | p50 ms | p99 ms | req/s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    // Each build gets `seconds` in all, in five alternating slices, so that a change in the
    // machine's load during the run falls on both alike.
    const SLICES: u32 = 5;
    let slice = Duration::from_secs(seconds) / SLICES;
    for clients in [1, 8] {
        let mut runs: Vec<(Vec<f64>, f64)> = vec![(Vec::new(), 0.0); paths.len()];
        for _ in 0..SLICES {
            for ((_, path), (latencies, throughput)) in paths.iter().zip(runs.iter_mut()) {
                let (more, rate) = load(&gateway, path, None, clients, slice);
                latencies.extend(more);
                *throughput += rate / f64::from(SLICES);
            }
        }
        for ((name, _), (latencies, throughput)) in paths.iter().zip(runs.iter_mut()) {
            latencies.sort_by(f64::total_cmp);
            println!(
                "| {name} | {clients} | {} | {:.2} | {:.2} | {throughput:.1} |",
                latencies.len(),
                at(latencies, 0.5),
                at(latencies, 0.99)
            );
        }
        println!("(h) {clients} clients: component/WAGI throughput ratio {:.3}", runs[1].1 / runs[0].1);
    }
    gateway.kill();
}

fn deploy(gateway: &Gateway, name: &str, wasm: &[u8]) -> Duration {
    let manifest = format!(
        "name = \"{name}\"\nwasm = \"x.wasm\"\n[[bundled_models]]\nname = \"digits\"\nfile = \"model/digits.onnx\"\nbackend = \"tract\"\n[limits]\nmemory_mib = 128\n"
    );
    let model = std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap();
    let parts: [(&str, Option<&str>, &[u8]); 3] =
        [("manifest", None, manifest.as_bytes()), ("wasm", None, wasm), ("file", Some("model/digits.onnx"), &model)];
    let (content_type, body) = multipart_parts(&parts);
    let started = Instant::now();
    let (status, json) = json_of(
        agent()
            .put(&gateway.url(&format!("/admin/apps/{name}")))
            .header("content-type", &content_type)
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send(&body[..]),
    );
    assert_eq!(status, 201, "{json}");
    started.elapsed()
}

/// Starts a gateway on `data` and times until `path` answers 200.
fn restart(data: &Path, cache: Option<&Path>, path: &str, body: &[u8]) -> Duration {
    let mut args = vec!["--no-warm-up".to_string(), "--data-dir".into(), data.display().to_string()];
    args.extend(["--admin-token".into(), TOKEN.into()]);
    match cache {
        Some(cache) => args.extend(["--compile-cache".into(), cache.display().to_string()]),
        None => args.push("--no-compile-cache".into()),
    }
    let started = Instant::now();
    let gateway = Gateway::start(&[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, json) =
        json_of(agent().post(&gateway.url(path)).header("content-type", "application/json").send(body));
    assert_eq!(status, 200, "{json}");
    let elapsed = started.elapsed();
    gateway.kill();
    elapsed
}

/// (i): the Python and JavaScript components.
fn python_and_js(seconds: u64) {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-components-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (data, cache) = (scratch.join("data"), scratch.join("compiled"));
    let pixels: Vec<u32> = (0..64).map(|i| [0, 5, 13, 9, 1][i % 5]).collect();
    let body = serde_json::json!({ "pixels": pixels }).to_string();
    let apps = [("digits-py", "Python"), ("digits-js", "JavaScript")];
    {
        let gateway = Gateway::start(
            &[Path::new("guests/digits")],
            &[
                "--no-warm-up",
                "--data-dir",
                data.to_str().unwrap(),
                "--admin-token",
                TOKEN,
                "--compile-cache",
                cache.to_str().unwrap(),
            ],
        );
        println!("| digits app | size MB | deploy (compile) s | p50 ms | p99 ms | req/s |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let (latencies, throughput) =
            load(&gateway, "/v1/digits", Some(body.as_bytes()), 1, Duration::from_secs(seconds));
        println!(
            "| Rust (WAGI) | {:.2} | - | {:.2} | {:.2} | {throughput:.1} |",
            std::fs::metadata(guest_wasm("digits")).unwrap().len() as f64 / 1e6,
            at(&latencies, 0.5),
            at(&latencies, 0.99)
        );
        for (name, language) in apps {
            let wasm = std::fs::read(component_wasm(name)).unwrap();
            let compile = deploy(&gateway, name, &wasm);
            let path = format!("/apps/{name}");
            let _ = load(&gateway, &path, Some(body.as_bytes()), 1, Duration::from_millis(500));
            let (latencies, throughput) = load(&gateway, &path, Some(body.as_bytes()), 1, Duration::from_secs(seconds));
            println!(
                "| {language} (component) | {:.2} | {:.2} | {:.2} | {:.2} | {throughput:.1} |",
                wasm.len() as f64 / 1e6,
                compile.as_secs_f64(),
                at(&latencies, 0.5),
                at(&latencies, 0.99)
            );
        }
        gateway.kill();
    }
    // The data directory now holds both apps, the cache their compiled code: a restart
    // compiles (or loads) both before it serves.
    let path = "/apps/digits-py";
    let cached = restart(&data, Some(&cache), path, body.as_bytes());
    let uncached = restart(&data, None, path, body.as_bytes());
    println!(
        "(i) restart to serving both components: {:.2} s with the compiled-code cache, {:.2} s without ({:.1}x)",
        cached.as_secs_f64(),
        uncached.as_secs_f64(),
        uncached.as_secs_f64() / cached.as_secs_f64()
    );
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let seconds: u64 = std::env::var("EDGENN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    println!("edgenn component benchmarks ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let [only] = &filter[..]
        && let Some(build) = only.strip_prefix("instructions-")
    {
        let runs = std::env::var("EDGENN_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
        let component = match build {
            "wagi" => false,
            "component" => true,
            other => panic!("instructions-{other}: the builds are instructions-wagi and instructions-component"),
        };
        type_ahead_instructions(component, runs);
        return;
    }
    if wanted("setup") {
        setup();
    }
    if wanted("typeahead") {
        type_ahead_in_process();
        type_ahead(seconds);
    }
    if wanted("languages") {
        python_and_js(seconds);
    }
}
