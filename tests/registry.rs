//! Apps and models as OCI artifacts in a real registry (see `common::registry`): `edgenn push`
//! publishes reproducible, content-addressed artifacts; `edgenn pull` gives back the same
//! folder, which a gateway serves; a blob tampered with in the registry's storage fails the
//! pull and writes nothing.

mod common;
use common::registry::Registry;
use common::*;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("registry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `edgenn ARGS`, which must succeed, and its JSON answer.
fn edgenn_json(args: &[&str]) -> serde_json::Value {
    let (ok, stdout, stderr) = edgenn(args);
    assert!(ok, "edgenn {args:?} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(here) = pending.pop() {
        for entry in std::fs::read_dir(&here).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn apps_and_models_go_through_a_registry_and_come_back_verified() {
    let root = scratch("roundtrip");
    let registry = Registry::start(&root.join("registry"));
    let app_ref = format!("{}/apps/digits:1", registry.address);
    let model_ref = format!("{}/models/wordlm:1", registry.address);

    let pushed = edgenn_json(&["push", "guests/digits", &app_ref]);
    assert_eq!(pushed["kind"], "app", "{pushed}");
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{pushed}");
    let again = edgenn_json(&["push", "guests/digits", &app_ref]);
    assert_eq!(again["digest"], digest.as_str(), "the same folder is the same artifact");
    let model = edgenn_json(&["push", "--model", "models/wordlm", &model_ref]);
    assert_eq!(model["kind"], "model", "{model}");

    // Back by digest: the model folder byte for byte; the app as the admin API stores it.
    let pulled_model = root.join("wordlm");
    let by_digest = format!("{}/models/wordlm@{}", registry.address, model["digest"].as_str().unwrap());
    let answer = edgenn_json(&["pull", &by_digest, pulled_model.to_str().unwrap()]);
    assert_eq!((answer["kind"].as_str(), &answer["digest"]), (Some("model"), &model["digest"]));
    assert_eq!(files_of(&pulled_model), files_of(&repo().join("models/wordlm")));
    let pulled_app = root.join("digits");
    edgenn_json(&["pull", &app_ref, pulled_app.to_str().unwrap()]);
    assert_eq!(std::fs::read(pulled_app.join("app.wasm")).unwrap(), std::fs::read(guest_wasm("digits")).unwrap());
    assert_eq!(
        std::fs::read(pulled_app.join("model/digits.onnx")).unwrap(),
        std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap()
    );

    // The pulled app serves, with its bundled model.
    let gateway = Gateway::start(&[&pulled_app], &["--no-warm-up"]);
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("guests/digits/testdata/golden.json")).unwrap()).unwrap();
    let case = &golden["cases"][0];
    let body = serde_json::json!({ "pixels": case["pixels"] }).to_string();
    let (status, json) = json_of(
        agent().post(&gateway.url("/v1/digits")).header("content-type", "application/json").send(body.as_bytes()),
    );
    assert_eq!((status, &json["digit"]), (200, &case["digit"]), "{json}");
    gateway.kill();

    // A blob changed in the registry's storage: the pull fails on its digest, writing nothing.
    let onnx = std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap();
    let blob = registry.blob(&edgenn::oci::sha256_digest(&onnx));
    assert!(blob.is_file(), "{} is where the registry keeps the model", blob.display());
    let mut tampered = onnx.clone();
    tampered[onnx.len() / 2] ^= 0xff;
    std::fs::write(&blob, tampered).unwrap();
    let refused = root.join("tampered");
    let (ok, stdout, stderr) = edgenn(&["pull", &app_ref, refused.to_str().unwrap()]);
    assert!(!ok, "a tampered blob was accepted: {stdout}");
    assert!(stderr.to_lowercase().contains("digest"), "the error names the digest: {stderr}");
    assert!(!refused.exists(), "nothing is written from a failed pull");

    // Clear errors for what is not there or not an artifact reference.
    let (ok, _, stderr) =
        edgenn(&["pull", &format!("{}/apps/nope:1", registry.address), root.join("x").to_str().unwrap()]);
    assert!(!ok && !stderr.is_empty(), "{stderr}");
    let (ok, _, stderr) = edgenn(&["push", "guests/digits", "not a reference"]);
    assert!(!ok && stderr.contains("not an artifact reference"), "{stderr}");
    let (ok, _, stderr) = edgenn(&["push", "--model", "guests/digits", &model_ref]);
    assert!(!ok && stderr.contains("model.toml"), "an app folder is not a model: {stderr}");
    let _ = std::fs::remove_dir_all(&root);
}

/// This machine's first non-loopback IPv4 address, if it has one.
fn non_loopback_ip() -> Option<String> {
    let output = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8(output.stdout)
        .ok()?
        .split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .map(String::from)
}

#[test]
fn a_registry_that_is_not_on_loopback_is_reached_over_verified_https_with_its_credentials() {
    let Some(ip) = non_loopback_ip() else {
        panic!("this test needs a non-loopback IPv4 address on this machine (hostname -I)");
    };
    let root = scratch("tls");
    let (ca, certificate, key) = certificates(&root, &ip);
    let login = ("fleet", "s3cret-pa55");
    let registry = Registry::start_at(&root.join("registry"), &ip, Some((&certificate, &key)), Some(login));
    let reference = format!("{}/models/wordlm:1", registry.address);
    let docker_config = root.join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let encoded =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{}:{}", login.0, login.1));
    let auths = serde_json::json!({ "auths": { registry.address.clone(): { "auth": encoded } } });
    std::fs::write(docker_config.join("config.json"), auths.to_string()).unwrap();
    let run = |args: &[&str], ca_file: &Path, env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_edgenn"));
        command.current_dir(repo()).args(args).env("SSL_CERT_FILE", ca_file).env_remove("SSL_CERT_DIR");
        for name in ["EDGENN_REGISTRY_TOKEN", "EDGENN_REGISTRY_USERNAME", "EDGENN_REGISTRY_PASSWORD", "DOCKER_CONFIG"] {
            command.env_remove(name);
        }
        command.env("HOME", &root).envs(env.iter().copied());
        let output = command.output().expect("edgenn runs");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    };
    let push = ["push", "--model", "models/wordlm", reference.as_str()];
    let password = [("EDGENN_REGISTRY_USERNAME", login.0), ("EDGENN_REGISTRY_PASSWORD", login.1)];
    // Trusting only the system's roots, the test CA's certificate is refused...
    let (ok, _, stderr) = run(&push, Path::new("/etc/ssl/certs/ca-certificates.crt"), &password);
    assert!(!ok, "a certificate no trusted CA signed was accepted");
    assert!(stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"), "{stderr}");
    // ...trusted, but without credentials, the registry refuses...
    let (ok, _, stderr) = run(&push, &ca, &[]);
    assert!(!ok && stderr.to_lowercase().contains("auth"), "pushed without credentials: {stderr}");
    // ...with them from the environment the push goes over HTTPS, and the pull with them from
    // the docker config file.
    let (ok, stdout, stderr) = run(&push, &ca, &password);
    assert!(ok, "push over HTTPS failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("\"digest\":\"sha256:"), "{stdout}");
    let pulled = root.join("pulled");
    let docker = [("DOCKER_CONFIG", docker_config.to_str().unwrap())];
    let (ok, stdout, stderr) = run(&["pull", &reference, pulled.to_str().unwrap()], &ca, &docker);
    assert!(ok, "pull with the docker config's credentials failed:\n{stdout}\n{stderr}");
    assert_eq!(files_of(&pulled), files_of(&repo().join("models/wordlm")));
    let _ = std::fs::remove_dir_all(&root);
}
