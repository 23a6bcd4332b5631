//! The HTTP edge's own logic, in process (`tower::ServiceExt::oneshot` on the router): routing,
//! 404 and 414 JSON, 413 from `Content-Length`, the admin API's 401 and name checks. On tract
//! only, with the `echo` test guest: no ONNX Runtime, no sockets.

use crate::gateway::{AdminConfig, AppsConfig, Gateway, GatewayConfig, ModelsConfig};
use crate::http::HttpLimits;
use crate::http::admin::UploadLimits;
use crate::nn::backend::LoadedGraph;
use crate::nn::backend::ort::OrtOptions;
use crate::runtime::RuntimeConfig;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use std::path::Path;
use std::sync::OnceLock;
use tower::ServiceExt;
use wasmtime_wasi_nn::backend::Id;

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
                    loader: None,
                    max_load_bytes: 0,
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
                fleet: None,
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
    // Every app under /apps/<name>, with or without the trailing slash, and below it.
    for (uri, below) in [("/apps/echo", "/"), ("/apps/echo/", "/"), ("/apps/echo/x/y", "/x/y"), ("/v1/echo/", "/")] {
        let (status, _, json) = send(get(uri)).await;
        assert_eq!((status, json["path"].as_str()), (StatusCode::OK, Some(below)), "{uri}: {json}");
        assert!(json["env"]["SCRIPT_NAME"].as_str().is_some_and(|s| !s.ends_with('/')), "{uri}: {json}");
    }
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

/// A gateway with the repository's shared models on tract, for the Open Inference Protocol.
fn v2_gateway(http: HttpLimits) -> Gateway {
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        models: ModelsConfig {
            roots: vec![repo().join("models")],
            files: Vec::new(),
            ort_library: None,
            ort: OrtOptions::default(),
            cache_bytes: 256 << 20,
            warm_up: false,
            loader: None,
            max_load_bytes: 0,
        },
        apps: AppsConfig { dirs: Vec::new(), manifests: Vec::new() },
        runtime: RuntimeConfig { max_instances: 4, ..RuntimeConfig::default() },
        http,
        web_demo: None,
        admin: None,
        fleet: None,
    };
    Gateway::build(&config).expect("the gateway builds")
}

fn v2_router() -> axum::Router {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| v2_gateway(HttpLimits { max_infer_body_bytes: 64 << 10, ..HttpLimits::default() })).router()
}

async fn v2(request: Request<Body>) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let response = v2_router().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, axum::body::to_bytes(body, 16 << 20).await.unwrap())
}

async fn v2_json(request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = v2(request).await;
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    (status, json)
}

/// An inference request on tract (this gateway has no ONNX Runtime).
fn infer_request(uri: &str, mut body: serde_json::Value) -> Request<Body> {
    body["parameters"]["backend"] = "tract".into();
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

/// Token ids for the start of a sentence, left-padded as the type-ahead guest does.
fn tokens() -> Vec<i32> {
    let mut tokens = vec![0; 32];
    tokens[29..].copy_from_slice(&[4, 17, 9]);
    tokens
}

#[tokio::test]
async fn v2_health_and_metadata_come_from_the_gateway_and_the_graph() {
    let (status, json) = v2_json(get("/v2/health/live")).await;
    assert_eq!((status, json["live"].as_bool()), (StatusCode::OK, Some(true)));
    let (status, _) = v2_json(get("/v2/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json) = v2_json(get("/v2")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(json["extensions"].as_array().unwrap().iter().any(|e| e == "binary_tensor_data"), "{json}");

    let (status, json) = v2_json(get("/v2/models/wordlm")).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["platform"], "onnx_onnxv1");
    assert_eq!(json["inputs"][0]["datatype"], "INT32");
    assert_eq!(json["inputs"][0]["shape"], serde_json::json!([1, 32]));
    assert_eq!(json["outputs"][0]["datatype"], "FP32");
    assert_eq!(json["outputs"][0]["shape"].as_array().unwrap().last().unwrap(), 6000);
    let (status, versioned) = v2_json(get("/v2/models/wordlm/versions/1")).await;
    assert_eq!((status, &versioned), (StatusCode::OK, &json));
    let (status, json) = v2_json(get("/v2/models/wordlm/ready")).await;
    assert_eq!((status, json["ready"].as_bool()), (StatusCode::OK, Some(true)));

    for missing in ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/wordlm/versions/2"] {
        let (status, json) = v2_json(get(missing)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {json}");
        assert!(json["error"].is_string(), "{missing}: {json}");
    }
}

// On a multi-threaded runtime, as the gateway's: inference runs in `block_in_place` there (the
// other v2 tests take the current-thread fallback, a blocking thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_infer_answers_json_and_binary_alike_and_as_the_backend_does() {
    let input = serde_json::json!({"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": tokens()});
    let (status, json) =
        v2_json(infer_request("/v2/models/wordlm/infer", serde_json::json!({"id": "a", "inputs": [input]}))).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!((json["model_name"].as_str(), json["id"].as_str()), (Some("wordlm"), Some("a")));
    let output = &json["outputs"][0];
    assert_eq!(output["datatype"], "FP32");
    let logits: Vec<f32> = output["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(logits.len(), 6000);

    // The same model called directly on the same tensor.
    let onnx = std::fs::read(repo().join("models/wordlm/model.onnx")).unwrap();
    let graph = crate::nn::backend::tract::TractBackend.load(&onnx).unwrap();
    let mut execution = graph.execution();
    let tensor = wasmtime_wasi_nn::Tensor::new(
        vec![1, 32],
        wasmtime_wasi_nn::wit::TensorType::I32,
        bytemuck::cast_slice(&tokens()).to_vec(),
    );
    execution.set_input(Id::Index(0), &tensor).unwrap();
    execution.compute(None).unwrap();
    let direct: Vec<f32> = bytemuck::pod_collect_to_vec(&execution.get_output(Id::Index(0)).unwrap().data);
    assert_eq!(logits, direct);

    // Binary input and binary output: the same numbers, byte for byte.
    let header = serde_json::json!({
        "inputs": [{"name": "tokens", "shape": [1, 32], "datatype": "INT32", "parameters": {"binary_data_size": 128}}],
        "outputs": [{"name": json["outputs"][0]["name"], "parameters": {"binary_data": true}}],
        "parameters": {"backend": "tract"},
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(bytemuck::cast_slice(&tokens()));
    let request = Request::post("/v2/models/wordlm/versions/1/infer")
        .header(crate::oip::HEADER_LENGTH, header.len())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(body))
        .unwrap();
    let (status, headers, body) = v2(request).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let json_length: usize = headers[crate::oip::HEADER_LENGTH].to_str().unwrap().parse().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&body[..json_length]).unwrap();
    assert_eq!(answer["outputs"][0]["parameters"]["binary_data_size"], 24000);
    let binary: Vec<f32> = bytemuck::pod_collect_to_vec(&body[json_length..]);
    assert_eq!(binary, direct);
    // Where the time went, stage by stage; the inference is most of it.
    let timing = headers["server-timing"].to_str().unwrap();
    let stage = |name: &str| -> f64 {
        let prefix = format!("{name};dur=");
        let part = timing.split(", ").find_map(|part| part.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{timing}"));
        part.parse().unwrap()
    };
    assert!(["read", "queue", "decode", "encode"].iter().all(|s| stage(s) >= 0.0), "{timing}");
    assert!(stage("infer") > 0.0, "{timing}");

    let metrics = router_metrics(v2_router()).await;
    assert!(metrics.contains("edgenn_v2_infer_requests_total{model=\"wordlm\",status=\"200\"}"), "{metrics}");
}

async fn router_metrics(router: axum::Router) -> String {
    let response = router.oneshot(get("/metrics")).await.unwrap();
    String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn v2_bad_requests_get_a_4xx_with_the_reason_and_the_next_one_is_served() {
    let tokens = tokens();
    let cases = [
        (
            "/v2/models/nope/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": tokens}]}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1, 32], "datatype": "FP32", "data": tokens}]}),
            StatusCode::BAD_REQUEST,
            "takes INT32",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1, 31], "datatype": "INT32", "data": tokens}]}),
            StatusCode::BAD_REQUEST,
            "31 elements",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1, 16], "datatype": "INT32", "data": &tokens[..16]}]}),
            StatusCode::BAD_REQUEST,
            "the model takes",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "other", "shape": [1], "datatype": "INT32", "data": [1]}]}),
            StatusCode::BAD_REQUEST,
            "no input \"other\"",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}),
            StatusCode::BAD_REQUEST,
            "BYTES",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": tokens}], "outputs": [{"name": "nope"}]}),
            StatusCode::BAD_REQUEST,
            "no output",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"text": "not an inference request"}),
            StatusCode::BAD_REQUEST,
            "not an inference request",
        ),
        (
            "/v2/models/wordlm/infer",
            serde_json::json!({"inputs": [{"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": vec![0; 40000]}]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
    ];
    for (uri, body, expected, reason) in cases {
        let shown: String = body.to_string().chars().take(200).collect();
        let (status, json) = v2_json(infer_request(uri, body)).await;
        assert_eq!(status, expected, "{shown}: {json}");
        assert!(json["error"].as_str().unwrap_or_default().contains(reason), "{shown}: {json}");
    }
    let input = serde_json::json!({"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": tokens});
    let (status, json) =
        v2_json(infer_request("/v2/models/wordlm/infer", serde_json::json!({"inputs": [input]}))).await;
    assert_eq!(status, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn openapi_describes_every_route_the_router_serves() {
    let (status, _, doc) = send(get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    // Every route registered in http::router, admin::router and v2::router, with its methods.
    let routes = [
        ("/", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/models", "get"),
        ("/v1/apps", "get"),
        ("/apps/{name}", "post"),
        ("/apps/{name}/", "get"),
        ("/apps/{name}/{rest}", "get"),
        ("/admin/apps", "get"),
        ("/admin/apps/{name}", "put"),
        ("/admin/apps/{name}", "delete"),
        ("/admin/apps/{name}", "get"),
        ("/admin/models", "get"),
        ("/admin/models/{name}", "get"),
        ("/admin/models/{name}", "put"),
        ("/admin/models/{name}", "delete"),
        ("/v2/repository/index", "post"),
        ("/v2/repository/models/{model}/load", "post"),
        ("/v2/repository/models/{model}/unload", "post"),
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{model}", "get"),
        ("/v2/models/{model}/ready", "get"),
        ("/v2/models/{model}/infer", "post"),
        ("/v2/models/{model}/versions/{version}", "get"),
        ("/v2/models/{model}/versions/{version}/ready", "get"),
        ("/v2/models/{model}/versions/{version}/infer", "post"),
    ];
    for (path, method) in routes {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not documented");
        // And the route is really there: not the router's 404 for an unknown path.
        if method == "get" && !path.contains('{') {
            let response = router().oneshot(get(path)).await.unwrap();
            assert_ne!(response.status(), StatusCode::NOT_FOUND, "{path} is documented but not served");
        }
    }
    assert_eq!(
        paths.len(),
        routes.iter().map(|(p, _)| p).collect::<std::collections::BTreeSet<_>>().len(),
        "undocumented extras: {:?}",
        paths.keys()
    );
    let infer = &paths["/v2/models/{model}/infer"]["post"];
    assert!(
        infer["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("InferRequest")
    );
    assert!(doc["components"]["schemas"]["InferRequest"]["properties"]["inputs"].is_object(), "{}", doc["components"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test]
async fn v2_an_inference_past_its_deadline_is_a_504() {
    let gateway = v2_gateway(HttpLimits { infer_deadline: std::time::Duration::ZERO, ..HttpLimits::default() });
    let input = serde_json::json!({"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": tokens()});
    let request = infer_request("/v2/models/wordlm/infer", serde_json::json!({"inputs": [input]}));
    let response = gateway.router().oneshot(request).await.unwrap();
    let status = response.status();
    let json: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!((status, json["kind"].as_str()), (StatusCode::GATEWAY_TIMEOUT, Some("deadline_exceeded")), "{json}");
    assert!(json["error"].as_str().unwrap().contains("deadline"), "{json}");
}

/// A request body that never arrives: a client stalling its upload.
pub(super) struct StalledBody;

impl http_body::Body for StalledBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// A request body whose first part arrives and whose rest never does.
pub(super) struct StallsAfter(pub(super) Option<bytes::Bytes>);

impl http_body::Body for StallsAfter {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.0.take() {
            Some(part) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(part)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test]
async fn v2_binary_inputs_declaring_more_than_the_limit_are_413_as_soon_as_the_header_is_in() {
    // 64 KiB is the limit of this router; the header asks for a megabyte and the rest of the
    // upload never comes: the answer cannot wait for it (that would be the 408 of a stalled
    // body), and no megabyte buffer is made on the client's word.
    let header = serde_json::json!({
        "inputs": [{"name": "tokens", "shape": [1, 262144], "datatype": "INT32", "parameters": {"binary_data_size": 1 << 20}}],
    })
    .to_string();
    let request = Request::post("/v2/models/wordlm/infer")
        .header(crate::oip::HEADER_LENGTH, header.len())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::new(StallsAfter(Some(bytes::Bytes::from(header)))))
        .unwrap();
    let (status, json) = v2_json(request).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")), "{json}");
    assert!(json["error"].as_str().unwrap().contains("limit of 65536 bytes"), "{json}");
    // A header that says less than the body brings is the same 400 streamed as whole.
    let header = serde_json::json!({
        "inputs": [{"name": "tokens", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(bytemuck::cast_slice(&tokens()));
    let request = Request::post("/v2/models/wordlm/infer")
        .header(crate::oip::HEADER_LENGTH, header.len())
        .body(Body::from(body))
        .unwrap();
    let (status, json) = v2_json(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(json["error"].as_str().unwrap().contains("64 bytes of binary data that no input claims"), "{json}");
}

#[tokio::test]
async fn v2_a_stalled_upload_holds_no_inference_slot_and_is_cut_off_when_its_bytes_stop() {
    let limits = HttpLimits {
        max_infers_in_flight: 1,
        body_idle_timeout: std::time::Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let router = v2_gateway(limits).router();
    // The one inference slot is not taken by an upload that never finishes: bodies are read
    // before a slot is.
    let stalled = Request::post("/v2/models/wordlm/infer").body(Body::new(StalledBody)).unwrap();
    let holder = tokio::spawn(router.clone().oneshot(stalled));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let input = serde_json::json!({"name": "tokens", "shape": [1, 32], "datatype": "INT32", "data": tokens()});
    let response = router
        .clone()
        .oneshot(infer_request("/v2/models/wordlm/infer", serde_json::json!({"inputs": [input]})))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The stalled upload itself is answered 408 once nothing has come for the idle timeout.
    let response = holder.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let json: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(json["kind"], "body_timeout", "{json}");
}

fn authorized(method: &str, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut request =
        Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, "Bearer router-test-token");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(Body::from(body)).unwrap()
}

/// PUT /admin/models/NAME with `(field, filename, bytes)` parts.
async fn put_model(name: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (StatusCode, serde_json::Value) {
    let mut form = crate::commands::client::Multipart::new();
    for (field, filename, data) in parts {
        form.part(field, *filename, None, data);
    }
    let content_type = form.content_type();
    let (status, _, json) =
        send(authorized("PUT", &format!("/admin/models/{name}"), Some(&content_type), form.finish())).await;
    (status, json)
}

#[tokio::test]
async fn the_model_repository_validates_uploads_and_maps_triton_onto_them() {
    let digits = std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap();
    let manifest = |name: &str| format!("name = \"{name}\"\nfile = \"model.onnx\"\nbackend = \"tract\"\n");
    let m = manifest("digits-r");
    // Bad uploads are 400 with the reason, before anything loads.
    for (parts, reason) in [
        (vec![("file", Some("model.onnx"), &digits[..])], "no `manifest` part"),
        (vec![("manifest", None, manifest("other").as_bytes())], "names model \"other\""),
        (vec![("manifest", None, m.as_bytes())], "needs its file"),
        (vec![("manifest", None, m.as_bytes()), ("file", Some(".hidden"), &digits[..])], "relative path"),
        (vec![("manifest", None, m.as_bytes()), ("file", Some("../x.onnx"), &digits[..])], "relative path"),
        (vec![("manifest", None, m.as_bytes()), ("file", Some("model.toml"), b"x")], "relative path"),
        (vec![("manifest", None, b"name = 3")], "invalid model.toml"),
    ] {
        let (status, json) = put_model("digits-r", &parts).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}: {json}");
        assert!(json["error"].as_str().unwrap().contains(reason), "{reason}: {json}");
    }
    // Not an ONNX model: 422, and the repository does not know it.
    let (status, json) =
        put_model("digits-r", &[("manifest", None, m.as_bytes()), ("file", Some("model.onnx"), b"no")]).await;
    assert_eq!((status, json["kind"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("model_refused")), "{json}");
    let (status, _, json) = send(authorized("GET", "/admin/models/digits-r", None, Vec::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");

    let parts = [
        ("manifest", None, m.as_bytes()),
        ("file", Some("./model.onnx"), &digits[..]),
        ("file", Some("notes/a.txt"), b"a"),
    ];
    let (status, json) = put_model("digits-r", &parts).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(put_model("digits-r", &parts).await.0, StatusCode::OK, "a second upload replaces");
    let (status, _, json) = send(authorized("GET", "/admin/models", None, Vec::new())).await;
    assert_eq!(status, StatusCode::OK);
    let listed = json["models"].as_array().unwrap().iter().find(|m| m["name"] == "digits-r").expect("listed").clone();
    assert_eq!((listed["origin"].as_str(), listed["state"].as_str()), (Some("uploaded"), Some("READY")), "{listed}");
    assert_eq!(listed["model"]["loaded"], serde_json::json!(["tract"]), "loaded when it was validated: {listed}");

    // Triton's repository extension: the token first.
    let (status, _, _) = send(Request::post("/v2/repository/index").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let index = |body: &'static str| async move {
        let (status, _, json) = send(authorized("POST", "/v2/repository/index", None, body.as_bytes().to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json.as_array().unwrap().iter().find(|m| m["name"] == "digits-r").cloned()
    };
    assert_eq!(index("").await.unwrap()["state"], "READY");
    let (status, _, json) = send(authorized(
        "POST",
        "/v2/repository/models/digits-r/unload",
        None,
        br#"{"parameters":{"unload_dependents":false}}"#.to_vec(),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let entry = index("").await.unwrap();
    assert_eq!((entry["state"].as_str(), entry["reason"].as_str()), (Some("UNAVAILABLE"), Some("unloaded")));
    assert!(index(r#"{"ready": true}"#).await.is_none(), "only ready models when asked");
    let (status, _, json) = send(authorized("POST", "/v2/repository/models/digits-r/load", None, Vec::new())).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(index("").await.unwrap()["state"], "READY");
    for (uri, body, status) in [
        ("/v2/repository/models/nope/load", "", StatusCode::NOT_FOUND),
        ("/v2/repository/models/nope/unload", "", StatusCode::NOT_FOUND),
        ("/v2/repository/models/digits-r/load", "[1]", StatusCode::BAD_REQUEST),
        ("/v2/repository/models/digits-r/load", r#"{"parameters":{"config":"{}"}}"#, StatusCode::BAD_REQUEST),
        (
            "/v2/repository/models/digits-r/load",
            r#"{"parameters":{"file:1/model.onnx":"***"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/v2/repository/models/..%2Fx/load", "", StatusCode::BAD_REQUEST),
    ] {
        let (got, _, json) = send(authorized("POST", uri, None, body.as_bytes().to_vec())).await;
        assert_eq!(got, status, "{uri} {body}: {json}");
    }
    let (status, _, json) = send(authorized("DELETE", "/admin/models/digits-r", None, Vec::new())).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(index("").await.is_none(), "deleted");
    let (status, _, _) = send(authorized("DELETE", "/admin/models/digits-r", None, Vec::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn v2_readiness_waits_for_every_declared_model_to_load() {
    let scratch = std::env::temp_dir().join(format!("edgenn-router-ready-{}", std::process::id()));
    let broken = scratch.join("models/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model.toml"), "name = \"broken\"\nfile = \"model.onnx\"\nbackend = \"tract\"\n")
        .unwrap();
    std::fs::write(broken.join("model.onnx"), b"not an ONNX model").unwrap();
    let wasm = repo().join("guests/target/wasm32-wasip1/release/echo.wasm");
    let gateway = |declared: &str| {
        let manifest = crate::apps::AppManifest::parse(&format!(
            "name = \"uses\"\nwasm = \"{}\"\nmodels = [\"{declared}\"]\n",
            wasm.display()
        ))
        .unwrap();
        let config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            models: ModelsConfig {
                roots: vec![repo().join("models"), scratch.join("models")],
                files: Vec::new(),
                ort_library: None,
                ort: OrtOptions::default(),
                cache_bytes: 256 << 20,
                warm_up: true,
                loader: None,
                max_load_bytes: 0,
            },
            apps: AppsConfig { dirs: Vec::new(), manifests: vec![(manifest, scratch.clone())] },
            runtime: RuntimeConfig { max_instances: 4, ..RuntimeConfig::default() },
            http: HttpLimits::default(),
            web_demo: None,
            admin: None,
            fleet: None,
        };
        Gateway::build(&config).expect("the gateway builds")
    };
    let ready = |gateway: &Gateway| {
        let router = gateway.router();
        async move { router.oneshot(get("/v2/health/ready")).await.unwrap().status() }
    };
    // wordlm's default backend, ONNX Runtime, is not in this gateway: tract will do.
    let fine = gateway("wordlm");
    assert_eq!(ready(&fine).await, StatusCode::SERVICE_UNAVAILABLE, "not before the warm-up");
    fine.apps.warm_up();
    assert_eq!(ready(&fine).await, StatusCode::OK);
    let failing = gateway("broken");
    failing.apps.warm_up();
    assert_eq!(ready(&failing).await, StatusCode::SERVICE_UNAVAILABLE, "a declared model did not load");
    let _ = std::fs::remove_dir_all(&scratch);
}
