//! The sandbox's promises, with guest test programs (guests/test-programs): fresh instance per
//! request, deadlines, memory caps, the model allow-list, the WAGI ABI.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        // Cargo's scratch directory for integration tests, inside target/.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sandbox-apps-{}", std::process::id()));
        let apps = [
            app_dir(
                &root,
                "echo",
                "echo",
                "routes = [\"/v1/echo\"]\n[config]\ngreeting = \"hello\"\nmax-words = \"3\"",
                &[],
            ),
            app_dir(&root, "spin", "spin-forever", "[limits]\ndeadline_ms = 200", &[]),
            app_dir(&root, "hog", "alloc-too-much", "[limits]\nmemory_mib = 32", &[]),
            app_dir(&root, "tensor-wordlm-only", "nn-tensor", "models = [\"wordlm\"]", &[]),
            app_dir(&root, "tensor-any", "nn-tensor", "models = [\"wordlm\", \"efficientnet-lite0\"]", &[]),
        ];
        let dirs: Vec<&Path> = apps.iter().map(PathBuf::as_path).collect();
        Gateway::start(&dirs, &["--no-warm-up"])
    })
}

fn call(method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let url = gateway().url(path);
    let agent = agent();
    let response = match method {
        "GET" => agent.get(&url).header("x-test-header", "yes").call(),
        _ => agent
            .post(&url)
            .header("x-test-header", "yes")
            .header("content-type", "application/octet-stream")
            .send(body),
    };
    json_of(response)
}

#[test]
fn the_guest_sees_a_cgi_request() {
    let (status, json) = call("POST", "/apps/echo/some/path?a=1&b=two%20words", b"body bytes");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/some/path");
    assert_eq!(json["query"], "a=1&b=two%20words");
    assert_eq!(json["body_len"], 10);
    assert_eq!(json["env"]["HTTP_X_TEST_HEADER"], "yes");
    assert_eq!(json["env"]["EDGENN_CONFIG_GREETING"], "hello");
    assert_eq!(json["env"]["EDGENN_CONFIG_MAX_WORDS"], "3");
    assert_eq!(json["env"]["SCRIPT_NAME"], "/apps/echo");
    let (status, json) = call("GET", "/v1/echo/x", b"");
    assert_eq!(status, 200, "{json}");
    assert_eq!((json["path"].as_str(), json["env"]["SCRIPT_NAME"].as_str()), (Some("/x"), Some("/v1/echo")));
}

#[test]
fn no_state_carries_between_requests() {
    let counts: Vec<u64> =
        (0..3).map(|_| call("GET", "/apps/echo", b"").1["request_count"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![1, 1, 1], "a static counter in the guest must start fresh every time");
}

#[test]
fn a_guest_past_its_deadline_gets_504_and_the_gateway_keeps_serving() {
    let started = std::time::Instant::now();
    let (status, json) = call("GET", "/apps/spin", b"");
    assert_eq!(status, 504, "{json}");
    assert_eq!(json["kind"], "deadline_exceeded", "{json}");
    assert!(started.elapsed().as_millis() < 3000);
    assert_eq!(call("GET", "/apps/echo", b"").0, 200);
}

#[test]
fn a_guest_past_its_memory_limit_gets_413_and_the_gateway_keeps_serving() {
    let (status, json) = call("GET", "/apps/hog", b"");
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["kind"], "memory_limit", "{json}");
    assert_eq!(call("GET", "/apps/echo", b"").0, 200);
}

#[test]
fn undeclared_and_unknown_models_fail_like_a_wasi_nn_error_not_a_trap() {
    let tensor: Vec<u8> = [1i32; 32].iter().flat_map(|v| v.to_le_bytes()).collect();
    // Declared: runs.
    let (status, json) = call("POST", "/apps/tensor-wordlm-only?model=wordlm&shape=1,32&type=i32", &tensor);
    assert_eq!(status, 200, "{json}");
    // Exists but not declared by this app: the same refusal as an unknown model.
    let (status, json) = call("POST", "/apps/tensor-wordlm-only?model=efficientnet-lite0&shape=1,32&type=i32", &tensor);
    assert_eq!(status, 404, "{json}");
    let (status_unknown, json_unknown) =
        call("POST", "/apps/tensor-any?model=no-such-model&shape=1,32&type=i32", &tensor);
    assert_eq!(status_unknown, 404, "{json_unknown}");
    assert_eq!(json["wasi_nn_error"], json_unknown["wasi_nn_error"]);
    // A guest that feeds a model garbage gets a wasi-nn runtime error, not a host crash.
    let (status, json) = call("POST", "/apps/tensor-any?model=efficientnet-lite0&shape=1,32&type=i32", &tensor);
    assert_eq!(status, 422, "{json}");
    assert_eq!(call("GET", "/apps/echo", b"").0, 200);
}
