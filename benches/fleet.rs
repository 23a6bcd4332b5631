//! (k) A fleet from a registry: how long `edgenn pull` takes for the classify app and its
//! model (efficientnet-lite0), how long a new gateway takes from start to ready when its fleet
//! file lists them (pull, load, deploy), and how long an edit of the fleet file takes to reach
//! three gateways (poll 200 ms), all against Debian's docker-registry on loopback.
//!
//! Run: `cargo bench --bench fleet` (after `scripts/setup.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::registry::Registry;
use common::{Gateway, agent, app_dir, edgenn};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn push(args: &[&str]) {
    let (ok, stdout, stderr) = edgenn(args);
    assert!(ok, "edgenn {args:?} failed:\n{stdout}\n{stderr}");
}

fn write_fleet(file: &Path, lines: &str) {
    let temporary = file.with_extension("new");
    std::fs::write(&temporary, lines).unwrap();
    std::fs::rename(&temporary, file).unwrap();
}

fn wait(bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < bound, "not within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// A gateway following `fleet` with its own `cache`, polling every 200 ms.
fn following(fleet: &Path, cache: &Path, extra: &[&str]) -> Gateway {
    let mut args = vec!["--fleet", fleet.to_str().unwrap(), "--fleet-cache", cache.to_str().unwrap()];
    args.extend(["--fleet-poll-ms", "200"]);
    args.extend(extra);
    Gateway::start(&[], &args)
}

fn hello_version(gateway: &Gateway) -> Option<String> {
    let mut response = agent().get(&gateway.url("/v1/hello")).call().ok()?;
    let json: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    json["env"]["EDGENN_CONFIG_VERSION"].as_str().map(String::from)
}

fn main() {
    let root: PathBuf = std::env::temp_dir().join(format!("edgenn-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let registry = Registry::start(&root.join("registry"));
    let address = registry.address.clone();
    let (app, model) = (format!("{address}/apps/classify:1"), format!("{address}/models/efficientnet-lite0:1"));
    push(&["push", "guests/classify", &app]);
    push(&["push", "--model", "models/efficientnet-lite0", &model]);
    println!("edgenn fleet benchmark ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));

    // Pulls, each into a fresh folder, 10 times.
    let pull_times = |reference: &str| -> Vec<f64> {
        (0..10)
            .map(|i| {
                let dir = root.join(format!("pull-{}-{i}", reference.len()));
                let started = Instant::now();
                let (ok, _, stderr) = edgenn(&["pull", reference, dir.to_str().unwrap()]);
                assert!(ok, "{stderr}");
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    let (app_ms, model_ms) = (median(pull_times(&app)), median(pull_times(&model)));
    println!(
        "- edgenn pull (a process, by tag, into a new folder), median of 10: classify app {app_ms:.1} ms, efficientnet-lite0 (18.6 MB) {model_ms:.1} ms"
    );

    // A new gateway, empty cache, fleet of classify + its model: start to ready, 5 times.
    let fleet = root.join("fleet.toml");
    write_fleet(&fleet, &format!("models = [\"{model}\"]\napps = [\"{app}\"]\n"));
    let cold: Vec<f64> = (0..5)
        .map(|i| {
            let cache = root.join(format!("cold-cache-{i}"));
            let started = Instant::now();
            let gateway = following(&fleet, &cache, &[]);
            let ready = || agent().get(&gateway.url("/v2/health/ready")).call().is_ok_and(|r| r.status() == 200);
            wait(Duration::from_secs(120), ready);
            let took = started.elapsed().as_secs_f64() * 1e3;
            gateway.kill();
            took
        })
        .collect();
    println!(
        "- a new gateway (empty cache; pull, load on both backends, deploy) from start to ready, median of 5: {:.0} ms",
        median(cold)
    );

    // Three gateways follow one file; each edit names a new version of a small app.
    let versions: Vec<PathBuf> = (0..6)
        .map(|i| {
            let extra = format!("routes = [\"/v1/hello\"]\n[config]\nversion = \"v{i}\"");
            let dir = app_dir(&root.join(format!("hello-{i}")), "hello", "echo", &extra, &[]);
            push(&["push", dir.to_str().unwrap(), &format!("{address}/apps/hello:v{i}")]);
            dir
        })
        .collect();
    let follow = |i: usize| write_fleet(&fleet, &format!("apps = [\"{address}/apps/hello:v{i}\"]\n"));
    follow(0);
    let gateways: Vec<Gateway> = (0..3)
        .map(|i| {
            let cache = root.join(format!("cache-{i}"));
            following(&fleet, &cache, &["--no-warm-up"])
        })
        .collect();
    wait(Duration::from_secs(60), || gateways.iter().all(|g| hello_version(g).as_deref() == Some("v0")));
    let converged: Vec<f64> = (1..versions.len())
        .map(|i| {
            let started = Instant::now();
            follow(i);
            let want = format!("v{i}");
            wait(Duration::from_secs(60), || gateways.iter().all(|g| hello_version(g).as_deref() == Some(&want)));
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let worst = converged.iter().cloned().fold(0.0, f64::max);
    println!(
        "- a fleet file edit to three gateways (poll 200 ms; resolve, pull, deploy), median of {}: {:.0} ms, worst {worst:.0} ms",
        converged.len(),
        median(converged)
    );
    drop(gateways);
    let _ = std::fs::remove_dir_all(&root);
}
