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
    run_client(gateway, "triton_client.py", &[]);
}

/// Runs `tests/oip/SCRIPT HOST:PORT REPO ARGS` with the tritonclient venv; it must pass.
fn run_client(gateway: &Gateway, script: &str, args: &[&str]) {
    let address = gateway.base.strip_prefix("http://").expect("an http base URL");
    let output = Command::new(repo().join(".edgenn/tritonclient/bin/python"))
        .arg(repo().join("tests/oip").join(script))
        .args([address, &repo().display().to_string()])
        .args(args)
        .output()
        .expect("runs the client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}'s checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    println!("{stdout}");
}

const TOKEN: &str = "repository-token-77c1";

/// A model directory for the digits model as a shared model: `model.toml`, the ONNX file and
/// its provenance.
fn digits_model_dir(at: &std::path::Path, description: &str) -> std::path::PathBuf {
    let dir = at.join("digits");
    std::fs::create_dir_all(&dir).unwrap();
    let model = repo().join("guests/digits/model");
    std::fs::copy(model.join("digits.onnx"), dir.join("digits.onnx")).unwrap();
    std::fs::copy(model.join("PROVENANCE.md"), dir.join("PROVENANCE.md")).unwrap();
    let manifest =
        format!("name = \"digits\"\nfile = \"digits.onnx\"\nbackend = \"tract\"\ndescription = \"{description}\"\n");
    std::fs::write(dir.join("model.toml"), manifest).unwrap();
    dir
}

/// GET or DELETE on the admin API, with the token.
fn admin(gateway: &Gateway, method: &str, path: &str) -> (u16, serde_json::Value) {
    let (url, token) = (gateway.url(path), format!("Bearer {TOKEN}"));
    match method {
        "GET" => json_of(agent().get(&url).header("authorization", &token).call()),
        "DELETE" => json_of(agent().delete(&url).header("authorization", &token).call()),
        other => panic!("no {other} here"),
    }
}

fn start_with_repository(data: &std::path::Path) -> Gateway {
    let data = data.to_str().unwrap();
    Gateway::start(&[std::path::Path::new("guests/digits")], &["--data-dir", data, "--admin-token", TOKEN])
}

#[test]
fn the_model_repository_adds_unloads_and_removes_models_and_keeps_them_across_restarts() {
    let install = Command::new("bash").arg(repo().join("scripts/tritonclient.sh")).status().expect("runs bash");
    assert!(install.success(), "scripts/tritonclient.sh failed");
    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("repository-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let data = scratch.join("data");
    let gateway = start_with_repository(&data);

    // The CLI side: `edgenn model push`, refused with a reason first.
    let model = digits_model_dir(&scratch, "pushed");
    let (ok, _, stderr) =
        edgenn(&["model", "push", model.to_str().unwrap(), "--to", &gateway.base, "--token", "wrong"]);
    assert!(!ok && stderr.contains("401"), "a wrong token: {stderr}");
    let (ok, _, stderr) =
        edgenn(&["model", "push", scratch.to_str().unwrap(), "--to", &gateway.base, "--token", TOKEN]);
    assert!(!ok && stderr.contains("model.toml"), "a folder that is not a model: {stderr}");
    let (ok, stdout, stderr) =
        edgenn(&["model", "push", model.to_str().unwrap(), "--to", &gateway.base, "--token", TOKEN]);
    assert!(ok, "edgenn model push failed:\n{stdout}\n{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("push prints JSON");
    assert_eq!(answer["installed"]["name"], "digits", "{answer}");
    let (status, listed) = admin(&gateway, "GET", "/admin/models/digits");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        (listed["model"]["origin"].as_str(), listed["model"]["state"].as_str()),
        (Some("uploaded"), Some("READY"))
    );
    assert_eq!(listed["manifest"]["description"], "pushed", "{listed}");

    // An app may now declare the shared model.
    let probe = std::fs::read(component_wasm("component-probe")).unwrap();
    let manifest = "name = \"needs-digits\"\nwasm = \"probe.wasm\"\nmodels = [\"digits\"]\n";
    let (content_type, body) = multipart_parts(&[("manifest", None, manifest.as_bytes()), ("wasm", None, &probe)]);
    let deployed = agent()
        .put(&gateway.url("/admin/apps/needs-digits"))
        .header("content-type", &content_type)
        .header("authorization", &format!("Bearer {TOKEN}"))
        .send(&body[..]);
    let (status, json) = json_of(deployed);
    assert_eq!(status, 201, "{json}");
    let probe_load =
        |gateway: &Gateway| json_of(agent().get(&gateway.url("/apps/needs-digits/model?name=digits")).call());
    let (status, json) = probe_load(&gateway);
    assert_eq!((status, json["loaded"].as_str()), (200, Some("digits")), "{json}");

    // Triton's client: the index, inference, unload and load, a load with files, the token.
    run_client(&gateway, "triton_repository.py", &[TOKEN]);
    let address = gateway.base.strip_prefix("http://").expect("an http base URL");

    // A model of the models directory is not the repository's to delete.
    let (status, json) = admin(&gateway, "DELETE", "/admin/models/wordlm");
    assert_eq!((status, json["kind"].as_str()), (409, Some("read_only")), "{json}");
    // Removed while an app declares it: the app answers wasi-nn's not-found, and serves on.
    let (status, json) = admin(&gateway, "DELETE", "/admin/models/digits");
    assert_eq!(status, 200, "{json}");
    let (status, json) = probe_load(&gateway);
    assert_eq!((status, json["errno"].as_u64()), (404, Some(8)), "not-found, not a crash: {json}");
    let (status, json) = json_of(agent().get(&gateway.url("/v2/models/digits")).call());
    assert_eq!(status, 404, "{json}");

    // Killed in the middle of an upload that would replace digits-ort: after a restart the old
    // digits-ort serves, the deleted digits stays deleted and the app that declares it is back.
    let onnx = std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap();
    let manifest = b"name = \"digits-ort\"\nfile = \"model.onnx\"\nbackend = \"tract\"\ndescription = \"half\"\n";
    let (content_type, body) = multipart_parts(&[("manifest", None, manifest), ("file", Some("model.onnx"), &onnx)]);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "PUT /admin/models/digits-ort HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    use std::io::Write;
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let staging = data.join("staging/models");
    assert!(std::fs::read_dir(&staging).unwrap().count() > 0, "the upload is being written");
    gateway.kill();
    drop(stream);

    let gateway = start_with_repository(&data);
    let (status, json) = admin(&gateway, "GET", "/admin/models/digits-ort");
    assert_eq!((status, json["model"]["state"].as_str()), (200, Some("READY")), "{json}");
    assert_eq!(
        json["manifest"]["backend"], "ort",
        "the model added through Triton's load, not the half upload: {json}"
    );
    let (status, json) = admin(&gateway, "GET", "/admin/models/digits");
    assert_eq!(status, 404, "a delete is durable: {json}");
    let (status, json) = probe_load(&gateway);
    assert_eq!((status, json["errno"].as_u64()), (404, Some(8)), "the app came back and answers not-found: {json}");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "the half upload is gone");
    gateway.kill();
    let _ = std::fs::remove_dir_all(&scratch);
}
