//! Soak: classification and type-ahead together against the release gateway for 10 minutes,
//! reporting throughput, errors (want 0) and the gateway's resident memory over time (want
//! flat). Not part of CI.
//!
//! Run: `cargo bench --bench soak` (after `scripts/setup.sh`).
//! `EDGENN_SOAK_SECONDS` sets the duration (default 600), `EDGENN_SOAK_CLIENTS` the clients
//! per endpoint (default 4: 8 in all, the per-app concurrency limit's default).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Gateway, agent, test_data};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
}

fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let seconds = env("EDGENN_SOAK_SECONDS", 600);
    let clients = env("EDGENN_SOAK_CLIENTS", 4) as usize;
    let gateway = Gateway::shared();
    let pid = gateway.pid();
    let jpeg = test_data("chelsea.jpg");
    let loads: [(&str, String, Option<&[u8]>); 2] = [
        ("classify", gateway.url("/v1/classify?k=5"), Some(&jpeg)),
        ("predict", gateway.url("/v1/predict?text=she%20was%20not%20acq&k=5"), None),
    ];
    let counts: [Counts; 2] = Default::default();
    let duration = Duration::from_secs(seconds);
    let started = Instant::now();
    println!("soak: {seconds} s, {clients} clients each on /v1/classify and /v1/predict, gateway pid {pid}");
    println!("| t (s) | classify ok | predict ok | errors | req/s (last interval) | gateway RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- |");
    std::thread::scope(|scope| {
        for (index, (_, url, body)) in loads.iter().enumerate() {
            for _ in 0..clients {
                let counts = &counts[index];
                scope.spawn(move || {
                    let agent = agent();
                    while started.elapsed() < duration {
                        let response = match body {
                            Some(body) => agent.post(url).header("content-type", "image/jpeg").send(*body),
                            None => agent.get(url).call(),
                        };
                        let ok = response.is_ok_and(|mut r| r.status() == 200 && r.body_mut().read_to_vec().is_ok());
                        let counter = if ok { &counts.ok } else { &counts.errors };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        let interval = Duration::from_secs(30.min(seconds.max(1)));
        let mut last_total = 0;
        let mut samples = Vec::new();
        while started.elapsed() < duration {
            std::thread::sleep(interval.min(duration.saturating_sub(started.elapsed())).max(Duration::from_millis(10)));
            let (classify, predict) = (counts[0].ok.load(Ordering::Relaxed), counts[1].ok.load(Ordering::Relaxed));
            let errors = counts[0].errors.load(Ordering::Relaxed) + counts[1].errors.load(Ordering::Relaxed);
            let total = classify + predict + errors;
            let rss = resident_mib(pid);
            samples.push(rss);
            println!(
                "| {:.0} | {classify} | {predict} | {errors} | {:.1} | {rss:.1} |",
                started.elapsed().as_secs_f64(),
                (total - last_total) as f64 / interval.as_secs_f64(),
            );
            last_total = total;
        }
        let total_errors = counts[0].errors.load(Ordering::Relaxed) + counts[1].errors.load(Ordering::Relaxed);
        let total_ok = counts[0].ok.load(Ordering::Relaxed) + counts[1].ok.load(Ordering::Relaxed);
        let (first, last) = (samples.first().copied().unwrap_or(0.0), samples.last().copied().unwrap_or(0.0));
        let peak = samples.iter().copied().fold(0.0, f64::max);
        println!(
            "\ntotal: {total_ok} ok, {total_errors} errors, {:.1} req/s; RSS first sample {first:.1} MiB, last {last:.1} MiB, peak {peak:.1} MiB",
            total_ok as f64 / started.elapsed().as_secs_f64()
        );
    });
}
