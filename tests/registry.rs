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
