//! The HTTP edge's own logic, in process (`tower::ServiceExt::oneshot` on the router): routing,
//! 404 and 414 JSON, 413 from `Content-Length`, the admin API's 401 and name checks. On tract
//! only, with the `echo` test guest: no ONNX Runtime, no sockets.

use crate::gateway::{AdminConfig, AppsConfig, Gateway, GatewayConfig, ModelsConfig};
use crate::http::HttpLimits;
use crate::http::admin::UploadLimits;
use crate::nn::backend::ort::OrtOptions;
use crate::runtime::RuntimeConfig;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use std::path::Path;
use std::sync::OnceLock;
use tower::ServiceExt;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A gateway with one app, `echo` at `/v1/echo` with a 1 KiB body limit, and the admin API.
fn router() -> axum::Router {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY
        .get_or_init(|| {
            let scratch = std::env::temp_dir().join(format!("edgenn-router-tests-{}", std::process::id()));
            let app = scratch.join("echo");
            std::fs::create_dir_all(&app).unwrap();
            let wasm = repo().join("guests/target/wasm32-wasip1/release/echo.wasm");
            assert!(wasm.is_file(), "{} is missing: run scripts/build-guests.sh", wasm.display());
            let manifest = format!(
                "name = \"echo\"\nroutes = [\"/v1/echo\"]\nwasm = \"{}\"\n[limits]\nmax_body_bytes = 1024\n",
                wasm.display()
            );
            std::fs::write(app.join("edgenn.toml"), manifest).unwrap();
            let config = GatewayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                models: ModelsConfig {
                    roots: Vec::new(),
                    files: Vec::new(),
                    ort_library: None,
                    ort: OrtOptions::default(),
                    cache_bytes: 64 << 20,
                    warm_up: false,
                },
                apps: AppsConfig { dirs: vec![app], manifests: Vec::new() },
                runtime: RuntimeConfig { max_instances: 4, ..RuntimeConfig::default() },
                http: HttpLimits::default(),
                web_demo: None,
                admin: Some(AdminConfig {
                    data_dir: scratch.join("data"),
                    token: Some("router-test-token".into()),
                    upload: UploadLimits { max_bytes: 1 << 20, read_timeout: std::time::Duration::from_secs(5) },
                }),
            };
            Gateway::build(&config).expect("the gateway builds")
        })
        .router()
}

async fn send(request: Request<Body>) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let response = router().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    (parts.status, parts.headers, json)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn app_routes_reach_the_guest_with_the_path_below_them() {
    let (status, _, json) = send(get("/v1/echo/some/path?x=1")).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!((json["path"].as_str(), json["env"]["SCRIPT_NAME"].as_str()), (Some("/some/path"), Some("/v1/echo")));
    let (status, _, json) = send(get("/apps/echo")).await;
    assert_eq!((status, json["path"].as_str()), (StatusCode::OK, Some("/")));
    // A path that only shares characters with a route is not below it.
    let (status, _, json) = send(get("/v1/echoes")).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn unknown_paths_and_apps_are_404_json() {
    for uri in ["/nothing/here", "/apps/no-such-app", "/v1"] {
        let (status, _, json) = send(get(uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {json}");
        assert_eq!(json["kind"], "not_found", "{uri}");
    }
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_it_is_read() {
    // The body is never sent: the answer comes from Content-Length alone.
    let request = Request::post("/v1/echo").header(header::CONTENT_LENGTH, "4096").body(Body::empty()).unwrap();
    let (status, _, json) = send(request).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")), "{json}");
    let request = Request::post("/v1/echo").body(Body::from(vec![b'x'; 2048])).unwrap();
    let (status, _, json) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "a streamed body over the limit: {json}");
}

#[tokio::test]
async fn an_over_long_uri_is_414() {
    let (status, _, json) = send(get(&format!("/v1/echo/{}", "a".repeat(9000)))).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::URI_TOO_LONG, Some("uri_too_long")));
}

#[tokio::test]
async fn the_admin_api_wants_the_token_and_valid_names() {
    let (status, headers, json) = send(get("/admin/apps")).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    let wrong = Request::get("/admin/apps").header(header::AUTHORIZATION, "Bearer nope").body(Body::empty()).unwrap();
    assert_eq!(send(wrong).await.0, StatusCode::UNAUTHORIZED);
    let authorized = |uri: &str, method: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer router-test-token")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, json) = send(authorized("/admin/apps", "GET")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["apps"][0]["name"], "echo");
    for name in ["%2Fetc", "..", ".hidden", "a%2Fb"] {
        let (status, _, json) = send(authorized(&format!("/admin/apps/{name}"), "DELETE")).await;
        assert_eq!((status, json["kind"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{name}");
    }
    let (status, _, json) = send(authorized("/admin/apps/no-such-app", "DELETE")).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let upload = Request::put("/admin/apps/x")
        .header(header::AUTHORIZATION, "Bearer router-test-token")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("not multipart"))
        .unwrap();
    let (status, _, json) = send(upload).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{json}");
}
