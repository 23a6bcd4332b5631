//! The Open Inference Protocol (`/v2`) against the real gateway, driven by Triton's own Python
//! client (`tritonclient[http]` from PyPI, installed into `.edgenn/tritonclient` by
//! `scripts/tritonclient.sh`): the checks are in `tests/oip/triton_client.py`.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn tritonclient_classifies_predicts_and_is_refused_with_reasons() {
    let install = Command::new("bash").arg(repo().join("scripts/tritonclient.sh")).status().expect("runs bash");
    assert!(install.success(), "scripts/tritonclient.sh failed");
    let gateway = Gateway::shared();
    // Readiness waits for the warm-up of the apps' models; give it a generous bound.
    let waited = Instant::now();
    while get("/v2/health/ready").0 != 200 {
        assert!(waited.elapsed() < Duration::from_secs(300), "the gateway never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let address = gateway.base.strip_prefix("http://").expect("an http base URL");
    let output = Command::new(repo().join(".edgenn/tritonclient/bin/python"))
        .arg(repo().join("tests/oip/triton_client.py"))
        .args([address, &repo().display().to_string()])
        .output()
        .expect("runs the client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the client's checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    println!("{stdout}");
}
