//! Benchmarks of the sandbox and the wasi-nn path, without HTTP:
//!
//! (a) one classification tensor through a guest + wasi-nn vs the same backend called directly
//!     on the same tensor (ratio; goal <= 1.05), for ort and tract;
//! (b) per-request sandbox set-up: fresh store + WASI context + instantiation from
//!     `InstancePre`, up to the guest's first instruction (p50; goal <= 50 us).
//!
//! Run: `cargo bench --bench overhead` (after `scripts/setup.sh`).

use edgenn::metrics::Metrics;
use edgenn::nn::backend::Backends;
use edgenn::nn::backend::ort::{OrtBackend, OrtOptions};
use edgenn::nn::backend::tract::TractBackend;
use edgenn::nn::{ModelAccess, ModelKey, ModelStore};
use edgenn::runtime::wagi::GuestRequest;
use edgenn::runtime::{AppPolicy, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi_nn::backend::{BackendExecutionContext, Id};
use wasmtime_wasi_nn::wit::TensorType;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn time_us(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64() * 1e6
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..iterations.div_ceil(10) {
        f();
    }
    (0..iterations)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// The pre-processed chelsea photo, as the classify guest would make it (NCHW f32).
fn chelsea_tensor() -> Vec<u8> {
    let image = image::open(repo().join("tests/data/chelsea.png")).expect("chelsea.png").to_rgb8();
    let (w, h) = image.dimensions();
    let scale = 256.0 / w.min(h) as f32;
    let resized = image::imageops::resize(
        &image,
        (w as f32 * scale).round() as u32,
        (h as f32 * scale).round() as u32,
        image::imageops::FilterType::Triangle,
    );
    let (x0, y0) = ((resized.width() - 224) / 2, (resized.height() - 224) / 2);
    let mut planes = vec![0f32; 3 * 224 * 224];
    for y in 0..224 {
        for x in 0..224 {
            let pixel = resized.get_pixel(x0 + x, y0 + y);
            for c in 0..3 {
                planes[c * 224 * 224 + (y * 224 + x) as usize] = (pixel[c] as f32 - 127.0) / 128.0;
            }
        }
    }
    planes.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let ort_library = repo().join(".edgenn/onnxruntime/libonnxruntime.so.1.31.1");
    let ort =
        OrtBackend::new(&ort_library, OrtOptions { sessions_per_model: 1, intra_threads: 1 }).expect("ONNX Runtime");
    let metrics = Arc::new(Metrics::new());
    let mut backends = Backends::default();
    backends.register(ort).register(TractBackend);
    let store = Arc::new(ModelStore::new(backends, 1 << 30, metrics.clone()));
    store.register_all(&repo().join("models")).expect("models");
    let runtime = Runtime::new(RuntimeConfig::default(), store.clone(), metrics).expect("runtime");
    let wasm = |name: &str| {
        std::fs::read(repo().join(format!("guests/target/wasm32-wasip1/release/{name}.wasm")))
            .unwrap_or_else(|e| panic!("{name}.wasm: {e} (run scripts/build-guests.sh)"))
    };
    let policy = |name: &str| AppPolicy {
        name: name.to_string(),
        memory_bytes: 256 << 20,
        deadline: Duration::from_secs(30),
        models: Arc::new(ModelAccess::everything()),
        config_env: Arc::from(Vec::new()),
        outbound: Arc::from(Vec::new()),
    };
    println!("edgenn overhead benchmarks ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));

    if filter.is_empty() || filter.iter().any(|f| "setup".contains(f.as_str())) {
        let module = runtime.compile(&wasm("noop")).expect("noop guest");
        let policy = policy("noop");
        let mut setups = Vec::new();
        let mut totals = measure(2000, || {
            let run = runtime.run(&module, &policy, GuestRequest::default()).expect("noop runs");
            setups.push(run.setup.as_secs_f64() * 1e6);
        });
        println!(
            "(b) sandbox set-up (store + WASI ctx + instantiate, to first guest instruction): p50 {:.1} us, p99 {:.1} us; whole noop request p50 {:.1} us",
            percentile(&mut setups, 0.5),
            percentile(&mut setups, 0.99),
            percentile(&mut totals, 0.5)
        );
    }

    if filter.is_empty() || filter.iter().any(|f| "tensor".contains(f.as_str())) {
        let tensor = chelsea_tensor();
        let module = runtime.compile(&wasm("nn-tensor")).expect("nn-tensor guest");
        let policy = policy("nn-tensor");
        for backend in ["ort", "tract"] {
            // The very graph (same sessions) the guest gets from the shared store.
            let kind = backend.parse().expect("a backend");
            let (graph, _) = store.graph(&ModelKey::shared("efficientnet-lite0"), Some(kind)).expect("graph");
            let input = wasmtime_wasi_nn::Tensor::new(vec![1, 3, 224, 224], TensorType::Fp32, tensor.clone());
            let direct_call = || {
                let mut exec = graph.execution();
                exec.set_input(Id::Index(0), &input).expect("input");
                exec.compute(None).expect("compute");
                let out = exec.get_output(Id::Index(0)).expect("output");
                assert_eq!(out.data.len(), 4000);
            };
            let request = GuestRequest {
                method: "POST".into(),
                query: format!("model=efficientnet-lite0@{backend}&shape=1,3,224,224"),
                body: tensor.clone().into(),
                ..GuestRequest::default()
            };
            let guest_call = || {
                let run = runtime.run(&module, &policy, request.clone()).expect("guest runs");
                assert_eq!(run.response.status, 200, "{:?}", String::from_utf8_lossy(&run.response.body));
            };
            // Alternate the two so that any drift in machine load hits both alike.
            let (mut direct, mut guest) = (Vec::new(), Vec::new());
            for round in 0..110 {
                let (d, g) = (time_us(direct_call), time_us(guest_call));
                // The first rounds warm caches and allocators.
                if round >= 10 {
                    direct.push(d);
                    guest.push(g);
                }
            }
            // The guest's own share: the same request with a model that does not exist does all
            // the I/O, parsing and sandbox work, and no inference.
            let io_request = GuestRequest { query: "model=no-such-model&shape=1,3,224,224".into(), ..request.clone() };
            let mut io_only = measure(100, || {
                let run = runtime.run(&module, &policy, io_request.clone()).expect("guest runs");
                assert_eq!(run.response.status, 404);
            });
            println!(
                "    guest work without inference (602 KB tensor in, JSON out, fresh instance): p50 {:.3} ms",
                percentile(&mut io_only, 0.5) / 1e3
            );
            let (d, g) = (percentile(&mut direct, 0.5), percentile(&mut guest, 0.5));
            println!(
                "(a) one tensor on {backend}: direct p50 {:.2} ms, guest + wasi-nn p50 {:.2} ms, ratio {:.3}",
                d / 1e3,
                g / 1e3,
                g / d
            );
        }
    }
}
