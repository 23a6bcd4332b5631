//! The command line: `edgenn run` serves one app with no configuration, `edgenn deploy` pushes
//! an app folder to a running gateway, `edgenn new` starts an app from the template, which
//! builds with the guest toolchain, deploys, is protected from a broken replacement, survives
//! a restart and is deleted.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn run_serves_a_bare_module_with_config_and_a_model_file() {
    let echo = guest_wasm("echo");
    let gateway = Gateway::spawn(&s(&["run", echo.to_str().unwrap(), "--config", "greeting=hi", "--no-warm-up"]));
    let (status, json) = json_of(agent().get(&gateway.url("/apps/echo/anything")).call());
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["env"]["EDGENN_CONFIG_GREETING"], "hi");
    assert_eq!(json["path"], "/anything");

    let tensor = guest_wasm("nn-tensor");
    let gateway = Gateway::spawn(&s(&[
        "run",
        tensor.to_str().unwrap(),
        "--model",
        "lm=models/wordlm/model.onnx",
        "--backend",
        "tract",
        "--no-warm-up",
    ]));
    let tokens: Vec<u8> = [7i32; 32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let post = |query: &str| {
        json_of(
            agent()
                .post(&gateway.url(&format!("/apps/nn-tensor?{query}&shape=1,32&type=i32")))
                .header("content-type", "application/octet-stream")
                .send(&tokens[..]),
        )
    };
    let (status, json) = post("model=lm");
    assert_eq!((status, json["output_len"].as_u64()), (200, Some(6000)), "{json}");
    // Only the models given with --model: the bundled model directory is not the app's.
    assert_eq!(post("model=wordlm").0, 404);
}

#[test]
fn run_serves_an_app_folder() {
    let gateway = Gateway::spawn(&s(&["run", "guests/predict"]));
    let (status, json) = json_of(agent().get(&gateway.url("/v1/predict?text=she%20was%20not%20acq&k=3")).call());
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["completing"], "acq");
}

#[test]
fn template_app_lifecycle_over_http() {
    // From the template...
    let app = scratch("new-app");
    let (ok, out, err) = edgenn(&["new", "word-echo", "--path", app.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    // ...built with the project's guest toolchain (sharing the guests' build cache)...
    let built = std::process::Command::new(repo().join("scripts/guest-cargo"))
        .args(["build", "--release", "--manifest-path"])
        .arg(app.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", repo().join("guests/target"))
        .status()
        .expect("guest-cargo runs");
    assert!(built.success());
    let wasm = repo().join("guests/target/wasm32-wasip1/release/word-echo.wasm");
    assert!(wasm.is_file());
    std::fs::create_dir_all(app.join("target/wasm32-wasip1/release")).unwrap();
    std::fs::copy(&wasm, app.join("target/wasm32-wasip1/release/word-echo.wasm")).unwrap();

    // ...and deployed to a running gateway with `edgenn deploy`.
    let data = scratch("new-app-data");
    let data_arg = data.to_str().unwrap();
    let gateway = Gateway::start(&[], &["--no-warm-up", "--admin-token", "cli-token", "--data-dir", data_arg]);
    let (ok, out, err) = edgenn(&["deploy", app.to_str().unwrap(), "--to", &gateway.base, "--token", "wrong"]);
    assert!(!ok, "a wrong token must fail: {out}{err}");
    assert!(err.contains("401"), "{err}");
    let (ok, out, err) = edgenn(&["deploy", app.to_str().unwrap(), "--to", &gateway.base, "--token", "cli-token"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"word-echo\""), "{out}");
    // The template runs the shared wordlm model on the numbers it is given.
    let serves = |gateway: &Gateway| {
        let (status, json) = json_of(agent().get(&gateway.url("/v1/word-echo?input=12,7,40&k=3")).call());
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["model"], "wordlm");
        assert_eq!(json["outputs"], 6000);
        assert_eq!(json["top"].as_array().map(Vec::len), Some(3), "{json}");
    };
    serves(&gateway);

    // A broken version (a module that does not compile) is refused; the old one keeps serving.
    std::fs::write(app.join("target/wasm32-wasip1/release/word-echo.wasm"), b"\0asm\x01\0\0\0broken").unwrap();
    let (ok, out, err) = edgenn(&["deploy", app.to_str().unwrap(), "--to", &gateway.base, "--token", "cli-token"]);
    assert!(!ok, "a broken module must be refused: {out}");
    assert!(err.contains("422") && err.contains("not a valid WebAssembly module"), "{err}");
    serves(&gateway);

    // It survives a crash and restart, and is gone once deleted.
    gateway.kill();
    let gateway = Gateway::start(&[], &["--no-warm-up", "--admin-token", "cli-token", "--data-dir", data_arg]);
    serves(&gateway);
    let deleted =
        agent().delete(&gateway.url("/admin/apps/word-echo")).header("authorization", "Bearer cli-token").call();
    assert_eq!(json_of(deleted).0, 200);
    assert_eq!(json_of(agent().get(&gateway.url("/v1/word-echo?input=1")).call()).0, 404);
    let _ = std::fs::remove_dir_all(&app);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn component_templates_build_and_answer_as_the_wagi_one() {
    // The Rust template as the guests workspace builds it (`my-app`), on the same model.
    let rust = Gateway::spawn(&s(&["run", "guests/template", "--no-warm-up"]));
    let query = "?input=12,7,40&k=3";
    let (status, reference) = json_of(agent().get(&rust.url(&format!("/v1/my-app{query}"))).call());
    assert_eq!(status, 200, "{reference}");
    rust.kill();
    let top_indices = |json: &serde_json::Value| {
        json["top"].as_array().unwrap().iter().map(|t| t["index"].clone()).collect::<Vec<_>>()
    };

    for (lang, flags) in [
        ("rust-component", &["--lang", "rust", "--component"][..]),
        ("python", &["--lang", "python"]),
        ("js", &["--lang", "js"]),
    ] {
        let app = scratch(&format!("new-{lang}-app"));
        let mut args = vec!["new", "word-top", "--path", app.to_str().unwrap()];
        args.extend(flags);
        let (ok, out, err) = edgenn(&args);
        assert!(ok, "{out}{err}");
        // The Rust component shares the build cache of scripts/build-components.sh.
        let built = std::process::Command::new(app.join("build.sh"))
            .env("CARGO_TARGET_DIR", repo().join("guests/target/component-build"))
            .status()
            .expect("build.sh runs");
        assert!(built.success(), "{lang}: build.sh");
        let gateway = Gateway::spawn(&s(&["run", app.to_str().unwrap(), "--no-warm-up"]));
        let (status, json) = json_of(agent().get(&gateway.url(&format!("/v1/word-top{query}"))).call());
        assert_eq!(status, 200, "{lang}: {json}");
        assert_eq!((&json["model"], &json["outputs"]), (&reference["model"], &reference["outputs"]), "{lang}: {json}");
        assert_eq!(top_indices(&json), top_indices(&reference), "{lang}: {json} vs {reference}");
        let (status, json) = json_of(agent().get(&gateway.url("/v1/word-top?input=x")).call());
        assert_eq!(status, 400, "{lang}: {json}");
        gateway.kill();
        let _ = std::fs::remove_dir_all(&app);
    }
}

#[test]
fn a_path_named_explicitly_must_exist() {
    for (args, named) in [
        (
            vec!["serve", "--app", "./no-such-app", "--listen", "127.0.0.1:0", "--exit-on-stdin-eof"],
            "--app ./no-such-app",
        ),
        (
            vec!["serve", "--models", "no-such-models", "--listen", "127.0.0.1:0", "--exit-on-stdin-eof"],
            "--models no-such-models",
        ),
        (
            vec!["serve", "--web-demo", "no-such-demo", "--listen", "127.0.0.1:0", "--exit-on-stdin-eof"],
            "--web-demo no-such-demo",
        ),
        (
            vec!["serve", "--ort-library", "/no/such/lib.so", "--listen", "127.0.0.1:0", "--exit-on-stdin-eof"],
            "--ort-library /no/such/lib.so",
        ),
    ] {
        let (ok, out, err) = edgenn(&args);
        assert!(!ok, "{args:?} started: {out}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    // The same from the environment. (Had it started, it would exit at once: stdin is closed.)
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgenn"))
        .current_dir(repo())
        .args(["serve", "--listen", "127.0.0.1:0", "--exit-on-stdin-eof"])
        .env("EDGENN_APPS", "./typo")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("./typo"));
}
