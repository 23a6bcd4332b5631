//! (j) The Open Inference Protocol: `POST /v2/models/efficientnet-lite0/infer` with one FP32
//! image tensor, binary (the binary tensor data extension, as `tritonclient` sends it) and
//! JSON, at 1 and 8 clients over HTTP on loopback, against ONNX Runtime called directly on the
//! same tensor in this process (same library, same session options as the gateway's), one
//! request and one direct run in turn: the protocol's share of the time at 1 client is
//! `1 - direct p50 / v2 p50` (goal <= 5 %). The gateway's `server-timing` says where the
//! rest goes.
//!
//! Run: `cargo bench --bench oip` (after `scripts/setup.sh`). `EDGENN_BENCH_SECONDS` sets the
//! duration of each HTTP run (default 10).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Gateway, repo};
use edgenn::nn::backend::LoadedGraph;
use edgenn::nn::backend::ort::{OrtBackend, OrtOptions};
use std::time::{Duration, Instant};
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::Id;
use wasmtime_wasi_nn::wit::TensorType;

const SHAPE: [u32; 4] = [1, 3, 224, 224];

/// A fixed pseudo-random image tensor in [-1, 1) (xorshift), the same for every run.
fn image() -> Vec<f32> {
    let mut state = 0x9e37_79b9_u32;
    (0..SHAPE.iter().product::<u32>())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// ONNX Runtime on the same tensor, no protocol, no HTTP: `runs` times set-input + compute +
/// get-output, in ms.
fn direct(graph: &dyn LoadedGraph, image: &[f32], runs: usize) -> Vec<f64> {
    let tensor = Tensor::new(SHAPE.to_vec(), TensorType::Fp32, bytemuck::cast_slice(image).to_vec());
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            let mut execution = graph.execution();
            execution.set_input(Id::Index(0), &tensor).expect("input");
            execution.compute(None).expect("compute");
            let _ = execution.get_output(Id::Index(0)).expect("output");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// One client, side by side: for `duration`, one request over HTTP, then ONNX Runtime directly
/// on the same tensor, in turn, so both see the same machine (it is shared and its speed drifts
/// by the second). Returns the HTTP latencies, the direct ones, and the medians of each answer's
/// `server-timing` stages (the gateway's own account: read, queue, decode, infer, encode), in ms.
fn side_by_side(
    gateway: &Gateway,
    graph: &dyn LoadedGraph,
    image: &[f32],
    request: (&str, &[(&str, &str)], &[u8]),
    duration: Duration,
) -> (Vec<f64>, Vec<f64>, Vec<(String, f64)>) {
    let (path, headers, body) = request;
    let agent = common::agent();
    let (mut http, mut direct_times) = (Vec::new(), Vec::new());
    let mut stages: Vec<(String, Vec<f64>)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let sent = Instant::now();
        let mut request = agent.post(&gateway.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send(body).expect("an answer");
        assert_eq!(response.status(), 200);
        let _ = response.body_mut().read_to_vec().expect("a body");
        http.push(sent.elapsed().as_secs_f64() * 1e3);
        let timing = response.headers()["server-timing"].to_str().expect("text").to_string();
        for part in timing.split(", ") {
            let Some((name, Ok(ms))) = part.split_once(";dur=").map(|(n, v)| (n, v.parse::<f64>())) else { continue };
            match stages.iter_mut().find(|(seen, _)| seen == name) {
                Some((_, values)) => values.push(ms),
                None => stages.push((name.to_string(), vec![ms])),
            }
        }
        direct_times.extend(direct(graph, image, 1));
    }
    let stages = stages.into_iter().map(|(name, values)| (name, percentile(&sorted(values), 0.5))).collect();
    (sorted(http), sorted(direct_times), stages)
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn main() {
    let seconds: u64 = std::env::var("EDGENN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let image = image();

    let options = OrtOptions::default();
    let ort =
        OrtBackend::new(&repo().join(".edgenn/onnxruntime/libonnxruntime.so.1.31.1"), options).expect("ONNX Runtime");
    let onnx = std::fs::read(repo().join("models/efficientnet-lite0/model.onnx")).expect("the model");
    let graph = ort.load(&onnx).expect("loads");

    let gateway = Gateway::start(&[], &["--no-warm-up"]);
    let header = serde_json::json!({
        "inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32",
                    "parameters": {"binary_data_size": image.len() * 4}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut binary = header.clone().into_bytes();
    binary.extend_from_slice(bytemuck::cast_slice(&image));
    let header_length = header.len().to_string();
    let binary_headers =
        [("content-type", "application/octet-stream"), ("inference-header-content-length", header_length.as_str())];
    let json = serde_json::json!({
        "inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32", "data": image}],
    })
    .to_string()
    .into_bytes();
    let json_headers = [("content-type", "application/json")];
    let path = "/v2/models/efficientnet-lite0/infer";
    // Loads the model in the gateway before anything is timed.
    common::load_with_headers(&gateway, path, &binary_headers, &binary, 1, Duration::from_millis(500));

    println!(
        "edgenn Open Inference Protocol benchmark ({} cores; ort {} sessions x {} intra-op threads)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        options.sessions_per_model,
        options.intra_threads
    );
    let _ = direct(&graph, &image, 20);
    let mut accounts = Vec::new();
    println!("| input | clients | requests | p50 ms | p99 ms | req/s | direct p50 ms | protocol share at p50 |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, headers, body) in [("binary", &binary_headers[..], &binary), ("JSON", &json_headers[..], &json)] {
        let (latencies, direct_times, stages) = side_by_side(&gateway, &graph, &image, (path, headers, body), duration);
        // What one client gets back to back: the requests are interleaved with direct runs.
        let requests_per_second = latencies.len() as f64 / (latencies.iter().sum::<f64>() / 1e3);
        let (p50, direct_p50) = (percentile(&latencies, 0.5), percentile(&direct_times, 0.5));
        println!(
            "| {name} | 1 | {} | {p50:.2} | {:.2} | {requests_per_second:.1} | {direct_p50:.2} | {:.1} % |",
            latencies.len(),
            percentile(&latencies, 0.99),
            100.0 * (1.0 - direct_p50 / p50)
        );
        accounts.push((name, stages));
        let (latencies, throughput) = common::load_with_headers(&gateway, path, headers, body, 8, duration);
        println!(
            "| {name} | 8 | {} | {:.2} | {:.2} | {throughput:.1} | - | - |",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
    println!();
    println!("Where a request's time goes at 1 client: medians in ms of the gateway's `server-timing` stages");
    for (name, stages) in accounts {
        let text: Vec<String> = stages.iter().map(|(stage, ms)| format!("{stage} {ms:.3}")).collect();
        println!("- {name}: {}", text.join(", "));
    }
}
