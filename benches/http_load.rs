//! (c) End-to-end latency (p50/p99) and throughput of `/v1/classify` and `/v1/predict` over real
//! HTTP on loopback, with 1 and 8 concurrent clients, against the release gateway binary.
//!
//! Run: `cargo bench --bench http_load` (after `scripts/setup.sh`).
//! `EDGENN_BENCH_SECONDS` sets the duration of each run (default 10).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Gateway, test_data};
use std::time::Duration;

struct Load {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

fn run(gateway: &Gateway, load: &Load, clients: usize, duration: Duration) -> (Vec<f64>, f64) {
    common::load(gateway, load.path, load.content_type, &load.body, clients, duration)
}

fn main() {
    let seconds: u64 = std::env::var("EDGENN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let gateway = Gateway::shared();
    let loads = [
        Load {
            name: "classify (chelsea.jpg, ort)",
            path: "/v1/classify?k=5",
            content_type: "image/jpeg",
            body: test_data("chelsea.jpg"),
        },
        Load {
            name: "classify (chelsea.jpg, tract)",
            path: "/v1/classify?k=5&backend=tract",
            content_type: "image/jpeg",
            body: test_data("chelsea.jpg"),
        },
        Load {
            name: "predict (GET, completion)",
            path: "/v1/predict?text=she%20was%20not%20acq&k=5",
            content_type: "",
            body: Vec::new(),
        },
    ];
    println!("| endpoint | clients | requests | p50 ms | p99 ms | req/s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for load in &loads {
        // Warm-up: models loaded, code paths hot.
        let _ = run(gateway, load, 1, Duration::from_millis(500));
        for clients in [1, 8] {
            let (latencies, throughput) = run(gateway, load, clients, Duration::from_secs(seconds));
            let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
            println!(
                "| {} | {clients} | {} | {:.2} | {:.2} | {:.1} |",
                load.name,
                latencies.len(),
                at(0.5),
                at(0.99),
                throughput
            );
        }
    }
}
