//! Deploying apps at run time over the admin API: validated, swapped atomically, persisted,
//! deleted; no token, no access.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const TOKEN: &str = "test-token-3f9a";

fn start(data_dir: &Path) -> Gateway {
    Gateway::start(&[], &["--no-warm-up", "--data-dir", data_dir.to_str().unwrap(), "--admin-token", TOKEN])
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("admin-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn deploy(
    gateway: &Gateway,
    name: &str,
    token: Option<&str>,
    parts: &[(&str, Option<&str>, &[u8])],
) -> (u16, serde_json::Value) {
    let (content_type, body) = multipart_parts(parts);
    let mut request = agent().put(&gateway.url(&format!("/admin/apps/{name}"))).header("content-type", &content_type);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    json_of(request.send(&body[..]))
}

fn get_json(gateway: &Gateway, path: &str) -> (u16, serde_json::Value) {
    json_of(agent().get(&gateway.url(path)).call())
}

const ECHO_MANIFEST: &str =
    "name = \"hello\"\nroutes = [\"/v1/hello\"]\nwasm = \"whatever.wasm\"\n[config]\nversion = \"one\"\n";

#[test]
fn deploy_replace_refuse_restart_delete() {
    let data = scratch();
    let gateway = start(&data);
    let echo = std::fs::read(guest_wasm("echo")).unwrap();

    // No token, a wrong token: refused before the upload is read (so the refused uploads here
    // are small: a client whose large upload is refused early sees its send cut off).
    let small: [(&str, Option<&str>, &[u8]); 1] = [("manifest", None, ECHO_MANIFEST.as_bytes())];
    assert_eq!(deploy(&gateway, "hello", None, &small).0, 401);
    assert_eq!(deploy(&gateway, "hello", Some("wrong"), &small).0, 401);
    assert_eq!(get_json(&gateway, "/admin/apps").0, 401);
    assert_eq!(get_json(&gateway, "/v1/hello").0, 404, "nothing was deployed");
    let parts: [(&str, Option<&str>, &[u8]); 2] = [("manifest", None, ECHO_MANIFEST.as_bytes()), ("wasm", None, &echo)];

    // Create: serves at once, under /apps/hello and its route.
    let (status, json) = deploy(&gateway, "hello", Some(TOKEN), &parts);
    assert_eq!(status, 201, "{json}");
    let (status, json) = get_json(&gateway, "/v1/hello/x?y=1");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["env"]["EDGENN_CONFIG_VERSION"], "one");

    // A broken replacement is refused with the reason, and the old version keeps serving.
    let broken_manifest = ECHO_MANIFEST.replace("\"one\"", "\"two\"");
    let garbage = b"\0asm\x01\0\0\0this is not a module".to_vec();
    let (status, json) = deploy(
        &gateway,
        "hello",
        Some(TOKEN),
        &[("manifest", None, broken_manifest.as_bytes()), ("wasm", None, &garbage)],
    );
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["kind"], "deploy_refused", "{json}");
    let (status, json) = deploy(
        &gateway,
        "hello",
        Some(TOKEN),
        &[("manifest", None, b"name = \"hello\"\nbogus = 1\n"), ("wasm", None, &echo)],
    );
    assert_eq!(status, 400, "{json}");
    let undeclared = ECHO_MANIFEST.replace("[config]", "models = [\"no-such-model\"]\n[config]");
    let (status, json) =
        deploy(&gateway, "hello", Some(TOKEN), &[("manifest", None, undeclared.as_bytes()), ("wasm", None, &echo)]);
    assert_eq!(status, 422, "{json}");
    let (status, json) = get_json(&gateway, "/v1/hello");
    assert_eq!((status, json["env"]["EDGENN_CONFIG_VERSION"].as_str()), (200, Some("one")));

    // A good replacement with a model bundled in the upload.
    let tensor_app = "name = \"hello\"\nwasm = \"x.wasm\"\n[[bundled_models]]\nname = \"tiny\"\nfile = \"model/tiny.onnx\"\nbackend = \"tract\"\n";
    let nn_tensor = std::fs::read(guest_wasm("nn-tensor")).unwrap();
    let model = std::fs::read(repo().join("models/wordlm/model.onnx")).unwrap();
    let (status, json) = deploy(
        &gateway,
        "hello",
        Some(TOKEN),
        &[
            ("manifest", None, tensor_app.as_bytes()),
            ("wasm", None, &nn_tensor),
            ("file", Some("model/tiny.onnx"), &model),
        ],
    );
    assert_eq!(status, 200, "{json}");
    let tokens: Vec<u8> = [5i32; 32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let call_tiny = |gateway: &Gateway| {
        json_of(
            agent()
                .post(&gateway.url("/apps/hello?model=tiny&shape=1,32&type=i32"))
                .header("content-type", "application/octet-stream")
                .send(&tokens[..]),
        )
    };
    let (status, json) = call_tiny(&gateway);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["output_len"], 6000);
    // The old route went with the old version; the bundled model is private to this app.
    assert_eq!(get_json(&gateway, "/v1/hello").0, 404);
    let (_, models) = get_json(&gateway, "/v1/models");
    assert!(!models.to_string().contains("tiny"), "{models}");

    // Killed and restarted on the same data directory: the deployed version comes back.
    gateway.kill();
    let gateway = start(&data);
    let (status, json) = call_tiny(&gateway);
    assert_eq!(status, 200, "after restart: {json}");
    let (status, json) = get_json(&gateway, "/admin/apps/hello");
    assert_eq!(status, 401, "{json}");
    let (status, json) = json_of(
        agent().get(&gateway.url("/admin/apps/hello")).header("authorization", &format!("Bearer {TOKEN}")).call(),
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["manifest"]["bundled_models"][0]["name"], "tiny");

    // Deleted: gone now and after a restart.
    let delete = |gateway: &Gateway| {
        json_of(
            agent()
                .delete(&gateway.url("/admin/apps/hello"))
                .header("authorization", &format!("Bearer {TOKEN}"))
                .call(),
        )
    };
    assert_eq!(delete(&gateway).0, 200);
    assert_eq!(delete(&gateway).0, 404);
    assert_eq!(call_tiny(&gateway).0, 404);
    gateway.kill();
    let gateway = start(&data);
    assert_eq!(call_tiny(&gateway).0, 404);

    // Metrics saw all of it.
    let mut response = agent().get(&gateway.url("/metrics")).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("edgenn_app_deploys_total"), "{text}");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn metrics_move_with_requests() {
    let gateway = Gateway::shared();
    let scrape = || {
        let mut response = agent().get(&gateway.url("/metrics")).call().unwrap();
        response.body_mut().read_to_string().unwrap()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let before = scrape();
    // Twice: the first may be the one that loads the model (a cache miss).
    for _ in 0..2 {
        let (status, _) = get("/v1/predict?text=my%20dear%20&k=3");
        assert_eq!(status, 200);
    }
    let (status, _) = get("/v1/predict?k=3");
    assert_eq!(status, 400);
    let after = scrape();
    for series in [
        "edgenn_http_requests_total{app=\"predict\",status=\"200\"}",
        "edgenn_http_requests_total{app=\"predict\",status=\"400\"}",
        "edgenn_guest_instantiations_total",
        "edgenn_inference_duration_seconds_count{model=\"wordlm\",backend=\"ort\"}",
        "edgenn_model_cache_hits_total",
    ] {
        assert!(value(&after, series) > value(&before, series), "{series} did not move:\n{after}");
    }
    assert!(value(&after, "edgenn_model_cache_bytes") > 1e6, "{after}");
    assert!(after.contains("edgenn_http_request_duration_seconds_bucket{"), "{after}");
}
