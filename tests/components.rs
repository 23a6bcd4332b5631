//! Standard `wasi:http/proxy` components on a real gateway on loopback, beside WAGI modules:
//! deployed over the admin API like modules, answering with real model output, inside the
//! same limits (deadline, memory), reaching wasi:nn only for declared models and the network
//! only for listed origins, and coming back after a restart from the compiled-code cache.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "component-token-5e1d";

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("components-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(data_dir: &Path, extra: &[&str]) -> Gateway {
    let mut args = vec!["--no-warm-up", "--data-dir", data_dir.to_str().unwrap(), "--admin-token", TOKEN];
    args.extend(extra);
    Gateway::start(&[], &args)
}

/// PUT /admin/apps/NAME with a manifest, a module or component, and bundled files.
fn deploy(
    gateway: &Gateway,
    name: &str,
    manifest: &str,
    wasm: &[u8],
    files: &[(&str, &[u8])],
) -> (u16, serde_json::Value) {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> =
        vec![("manifest", None, manifest.as_bytes()), ("wasm", None, wasm)];
    parts.extend(files.iter().map(|(file, bytes)| ("file", Some(*file), *bytes)));
    let (content_type, body) = multipart_parts(&parts);
    let request = agent()
        .put(&gateway.url(&format!("/admin/apps/{name}")))
        .header("content-type", &content_type)
        .header("authorization", &format!("Bearer {TOKEN}"));
    json_of(request.send(&body[..]))
}

fn get(gateway: &Gateway, path: &str) -> (u16, serde_json::Value) {
    json_of(agent().get(&gateway.url(path)).call())
}

fn post_json(gateway: &Gateway, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    json_of(
        agent().post(&gateway.url(path)).header("content-type", "application/json").send(body.to_string().as_bytes()),
    )
}

fn probe_manifest(name: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nwasm = \"probe.wasm\"\n{extra}\n")
}

#[test]
fn the_type_ahead_component_answers_what_the_wagi_module_answers() {
    let data = scratch("predict");
    let gateway = start(&data, &[]);
    let component = std::fs::read(component_wasm("predict-component")).unwrap();
    let module = std::fs::read(guest_wasm("predict")).unwrap();
    let manifest = |name: &str| {
        format!("name = \"{name}\"\nwasm = \"x.wasm\"\nmodels = [\"wordlm\"]\n[config]\nmodel = \"wordlm\"\n")
    };
    let (status, json) = deploy(&gateway, "predict-c", &manifest("predict-c"), &component, &[]);
    assert_eq!(status, 201, "{json}");
    let (status, json) = deploy(&gateway, "predict-w", &manifest("predict-w"), &module, &[]);
    assert_eq!(status, 201, "{json}");

    for text in ["the quick brown", "i would like to ", "acq"] {
        let query = format!("?text={}&k=5", text.replace(' ', "%20"));
        let (status, component) = get(&gateway, &format!("/apps/predict-c{query}"));
        assert_eq!(status, 200, "{component}");
        let (status, wagi) = get(&gateway, &format!("/apps/predict-w{query}"));
        assert_eq!(status, 200, "{wagi}");
        let suggestions = component["suggestions"].as_array().expect("suggestions");
        assert_eq!(suggestions.len(), 5, "{component}");
        assert_eq!(component, wagi, "the same model, the same handler, two ABIs: {text:?}");
        for backend in ["ort", "tract"] {
            let (status, json) = get(&gateway, &format!("/apps/predict-c{query}&backend={backend}"));
            assert_eq!(status, 200, "{json}");
            assert_eq!(json["suggestions"][0]["word"], component["suggestions"][0]["word"], "{backend}: {json}");
        }
    }
    let (status, apps) =
        json_of(agent().get(&gateway.url("/admin/apps")).header("authorization", &format!("Bearer {TOKEN}")).call());
    assert_eq!(status, 200);
    let abi =
        |name: &str| apps["apps"].as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| a["abi"].clone());
    assert_eq!(abi("predict-c"), Some("component".into()), "{apps}");
    assert_eq!(abi("predict-w"), Some("wagi".into()), "{apps}");
    gateway.kill();
}

#[test]
fn a_component_is_held_to_its_deadline_and_memory() {
    let data = scratch("limits");
    let gateway = start(&data, &[]);
    let probe = std::fs::read(component_wasm("component-probe")).unwrap();
    let limits = "[limits]\ndeadline_ms = 800\nmemory_mib = 32\nmax_concurrency = 2";
    let (status, json) = deploy(&gateway, "probe", &probe_manifest("probe", limits), &probe, &[]);
    assert_eq!(status, 201, "{json}");

    let started = Instant::now();
    let (status, json) = get(&gateway, "/apps/probe/spin");
    assert_eq!((status, json["kind"].as_str()), (504, Some("deadline_exceeded")), "{json}");
    assert!(started.elapsed() < Duration::from_secs(5), "spin answered after {:?}", started.elapsed());

    let (status, json) = get(&gateway, "/apps/probe/alloc");
    assert_eq!((status, json["kind"].as_str()), (413, Some("memory_limit")), "{json}");

    // A sleep is a host timer, not guest code: the deadline must cut it all the same.
    let started = Instant::now();
    let (status, json) = get(&gateway, "/apps/probe/sleep?ms=20000");
    assert_eq!((status, json["kind"].as_str()), (504, Some("deadline_exceeded")), "{json}");
    assert!(started.elapsed() < Duration::from_secs(5), "the sleep answered after {:?}", started.elapsed());

    let (status, json) = get(&gateway, "/apps/probe/sleep?ms=10");
    assert_eq!((status, json["slept_ms"].as_u64()), (200, Some(10)), "{json}");
    let (status, json) = post_json(&gateway, "/apps/probe/echo?x=1", &serde_json::json!({"a": 1}));
    assert_eq!(status, 200, "the gateway keeps serving: {json}");
    assert_eq!(
        (json["path"].as_str(), json["query"].as_str(), json["body_bytes"].as_u64()),
        (Some("/echo"), Some("x=1"), Some(7))
    );
    gateway.kill();
}

#[test]
fn wasi_nn_resolves_only_declared_models() {
    let data = scratch("models");
    let gateway = start(&data, &[]);
    let probe = std::fs::read(component_wasm("component-probe")).unwrap();
    let (status, json) =
        deploy(&gateway, "declares", &probe_manifest("declares", "models = [\"wordlm\"]"), &probe, &[]);
    assert_eq!(status, 201, "{json}");
    let (status, json) = deploy(&gateway, "declares-none", &probe_manifest("declares-none", ""), &probe, &[]);
    assert_eq!(status, 201, "{json}");

    for reference in ["wordlm", "wordlm@tract", "wordlm@ort"] {
        let (status, json) = get(&gateway, &format!("/apps/declares/model?name={reference}"));
        assert_eq!((status, json["loaded"].as_str()), (200, Some(reference)), "{json}");
    }
    // Not declared, not there, not a backend: wasi-nn's not-found, an answer, never a trap.
    for (app, reference) in [
        ("declares-none", "wordlm"),
        ("declares", "efficientnet-lite0"),
        ("declares", "nope"),
        ("declares", "wordlm@cuda"),
    ] {
        let (status, json) = get(&gateway, &format!("/apps/{app}/model?name={reference}"));
        assert_eq!(status, 404, "{app} loading {reference}: {json}");
        assert_eq!(json["errno"], 8, "not-found: {json}");
    }
    gateway.kill();
}

/// Reads a request's head from `stream`: the path of its request line (None if no request came).
fn request_path(stream: impl std::io::Read) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return None;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    Some(request_line.split_whitespace().nth(1).unwrap_or("?").to_string())
}

/// An upstream HTTP server on loopback that counts its connections and answers each request
/// with a body naming the path it was asked for.
fn upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let Some(path) = request_path(stream.try_clone().unwrap()) else { continue };
            let body = format!("upstream saw {path}");
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    (port, connections)
}

#[test]
fn outbound_http_reaches_only_listed_origins() {
    let (port, connections) = upstream();
    let data = scratch("outbound");
    let gateway = start(&data, &[]);
    let probe = std::fs::read(component_wasm("component-probe")).unwrap();
    let allowed = format!("allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]");
    let (status, json) = deploy(&gateway, "allowed", &probe_manifest("allowed", &allowed), &probe, &[]);
    assert_eq!(status, 201, "{json}");
    let (status, json) = deploy(&gateway, "closed", &probe_manifest("closed", ""), &probe, &[]);
    assert_eq!(status, 201, "{json}");
    let other_port = format!("allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]", port.wrapping_add(1));
    let (status, json) = deploy(&gateway, "other-port", &probe_manifest("other-port", &other_port), &probe, &[]);
    assert_eq!(status, 201, "{json}");

    let target = format!("http://127.0.0.1:{port}/hello");
    let (status, json) = get(&gateway, &format!("/apps/allowed/fetch?url={target}"));
    assert_eq!(status, 200, "{json}");
    assert_eq!((json["status"].as_u64(), json["body"].as_str()), (Some(200), Some("upstream saw /hello")), "{json}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    for app in ["closed", "other-port"] {
        let (status, json) = get(&gateway, &format!("/apps/{app}/fetch?url={target}"));
        assert_eq!(status, 502, "{app}: {json}");
        assert!(json["error"].as_str().unwrap_or("").contains("HttpRequestDenied"), "{app}: {json}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "a denied request never reached the upstream");

    // A manifest with a malformed origin is refused at deploy, as soon as the manifest part is
    // read: sent while the answer is read, as a browser does, since the gateway may answer
    // before the module has been sent.
    let bad = probe_manifest("bad", "allowed_outbound_hosts = [\"127.0.0.1\"]");
    let (content_type, body) = multipart_parts(&[("manifest", None, bad.as_bytes()), ("wasm", None, &probe)]);
    let head = format!(
        "PUT /admin/apps/bad HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = send_while_reading(gateway.base.trim_start_matches("http://"), &head, body);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    gateway.kill();
}

/// An HTTPS upstream on loopback whose certificate (for 127.0.0.1) is signed by the test's own
/// CA: it answers like [`upstream`] and counts the requests that came through the handshake.
fn tls_upstream(certificate: &Path, key: &Path) -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certificate).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), stream);
            // The handshake happens in the first read: a client that refuses the certificate
            // ends it there, before any request.
            let Some(path) = request_path(&mut tls) else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let body = format!("upstream saw {path} over TLS");
            let _ = write!(tls, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, requests)
}

#[test]
fn outbound_https_is_verified_against_the_machines_trust_store() {
    let root = scratch("https");
    std::fs::create_dir_all(&root).unwrap();
    let (ca, certificate, key) = certificates(&root, "127.0.0.1");
    let (port, requests) = tls_upstream(&certificate, &key);
    // Only the file named below: no directory of the machine's adds to it.
    let no_directory = root.join("no-certificates");
    std::fs::create_dir_all(&no_directory).unwrap();
    let probe = std::fs::read(component_wasm("component-probe")).unwrap();
    let manifest = probe_manifest("tls", "allowed_outbound_hosts = [\"https://127.0.0.1:*\"]");
    let target = format!("/apps/tls/fetch?url=https://127.0.0.1:{port}/hello");

    // The machine trusts the test's CA (as an operator would add a private one): reached.
    let data = root.join("trusting");
    let gateway = Gateway::start_with_env(
        &[],
        &["--no-warm-up", "--data-dir", data.to_str().unwrap(), "--admin-token", TOKEN],
        &[("SSL_CERT_FILE", ca.to_str().unwrap()), ("SSL_CERT_DIR", no_directory.to_str().unwrap())],
    );
    let (status, json) = deploy(&gateway, "tls", &manifest, &probe, &[]);
    assert_eq!(status, 201, "{json}");
    let (status, json) = get(&gateway, &target);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["body"].as_str(), Some("upstream saw /hello over TLS"), "{json}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    gateway.kill();

    // Trusting only the system's CAs, the same upstream is a certificate error for the guest,
    // and no request reaches it.
    let data = root.join("system");
    let gateway = Gateway::start_with_env(
        &[],
        &["--no-warm-up", "--data-dir", data.to_str().unwrap(), "--admin-token", TOKEN],
        &[("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"), ("SSL_CERT_DIR", no_directory.to_str().unwrap())],
    );
    let (status, json) = deploy(&gateway, "tls", &manifest, &probe, &[]);
    assert_eq!(status, 201, "{json}");
    let (status, json) = get(&gateway, &target);
    assert_eq!(status, 502, "{json}");
    assert!(json["error"].as_str().unwrap_or("").contains("TlsCertificateError"), "{json}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "nothing was sent over an unverified connection");
    gateway.kill();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_component_importing_what_the_host_lacks_is_refused_naming_it() {
    let data = scratch("imports");
    let gateway = start(&data, &[]);
    let component = component_importing("acme:vault/secrets@1.0.0", "func() -> string");
    let (status, json) = deploy(&gateway, "vault", &probe_manifest("vault", ""), &component, &[]);
    assert_eq!(status, 422, "{json}");
    let error = json["error"].as_str().unwrap_or("");
    assert!(error.contains("acme:vault/secrets"), "the refusal names the import: {json}");
    let (status, _) = get(&gateway, "/apps/vault");
    assert_eq!(status, 404, "nothing was deployed");
    gateway.kill();
}

#[test]
fn a_component_panic_reaches_the_gateway_log_through_the_sdk_stderr() {
    // The SDK writes std's stderr itself (guests/sdk/src/preview1.rs) rather than through the
    // preview1 adapter: a panic's message must still reach the gateway's log.
    let data = scratch("panic");
    let args = ["--no-warm-up", "--data-dir", data.to_str().unwrap(), "--admin-token", TOKEN];
    let gateway = Gateway::start_logged(&[], &args);
    let probe = std::fs::read(component_wasm("component-probe")).unwrap();
    let (status, json) = deploy(&gateway, "probe", &probe_manifest("probe", ""), &probe, &[]);
    assert_eq!(status, 201, "{json}");
    let message = format!("probe-panic-{}", std::process::id());
    let (status, json) = get(&gateway, &format!("/apps/probe/panic?message={message}"));
    assert_eq!((status, json["kind"].as_str()), (500, Some("guest_failed")), "{json}");
    assert!(!json.to_string().contains(&message), "the guest's stderr is logged, not sent: {json}");
    // The gateway logs a failed instance's stderr (over several lines) before it answers.
    let log = gateway.log();
    assert!(
        log.split_once("guest stderr app=probe").is_some_and(|(_, stderr)| stderr.contains(&message)),
        "the panic message is in the gateway's log:\n{log}"
    );
    let (status, _) = get(&gateway, "/apps/probe/echo");
    assert_eq!(status, 200, "the gateway keeps serving");
    gateway.kill();
}

#[test]
fn the_sdk_component_apps_import_no_preview1_so_need_no_adapter() {
    // The SDK defines the preview1 functions std and wasi-libc link (guests/sdk/src/preview1.rs),
    // so its apps' modules import none and `edgenn componentize` adds no adapter to them.
    let engine = wasmtime::Engine::default();
    for module in ["predict_component", "my_component"] {
        let path = repo().join("guests/target/component-build/wasm32-wasip1/release").join(format!("{module}.wasm"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-components.sh)", path.display()));
        let module = wasmtime::Module::new(&engine, &bytes).unwrap();
        let preview1: Vec<String> = module
            .imports()
            .filter(|import| import.module() == "wasi_snapshot_preview1")
            .map(|import| import.name().to_string())
            .collect();
        assert_eq!(preview1, Vec::<String>::new(), "{} imports preview1", path.display());
    }
}

/// A component whose world imports `interface` (one function `get: ty`) beside
/// wasi:http/incoming-handler, made with wit-component from a dummy module.
fn component_importing(interface: &str, ty: &str) -> Vec<u8> {
    let (package, rest) = interface.split_once('/').unwrap();
    let (name, version) = rest.split_once('@').unwrap();
    let wit =
        format!("package {package}@{version};\ninterface {name} {{ get: {ty}; }}\nworld needs {{ import {name}; }}\n");
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("needs.wit", &wit).unwrap();
    let world = resolve.select_world(&[package], Some("needs")).unwrap();
    let mut module = wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    wit_component::ComponentEncoder::default().module(&module).unwrap().validate(true).encode().unwrap()
}

#[test]
fn components_come_back_after_a_restart_from_the_compiled_cache() {
    let data = scratch("restart");
    let cache = scratch("restart-cache");
    let cache_arg = cache.to_str().unwrap();
    let gateway = start(&data, &["--compile-cache", cache_arg]);
    let component = std::fs::read(component_wasm("predict-component")).unwrap();
    let manifest = "name = \"typeahead\"\nwasm = \"x.wasm\"\nmodels = [\"wordlm\"]\n";
    let (status, json) = deploy(&gateway, "typeahead", manifest, &component, &[]);
    assert_eq!(status, 201, "{json}");
    let (status, before) = get(&gateway, "/apps/typeahead?text=good%20morning");
    assert_eq!(status, 200, "{before}");
    gateway.kill();
    let cached = std::fs::read_dir(&cache).map(|entries| entries.count()).unwrap_or(0);
    assert!(cached > 0, "compiled code was written to {}", cache.display());

    let gateway = start(&data, &["--compile-cache", cache_arg]);
    let (status, after) = get(&gateway, "/apps/typeahead?text=good%20morning");
    assert_eq!(status, 200, "{after}");
    assert_eq!(before, after, "the restored component answers as before");
    gateway.kill();
}

/// The golden digit drawings: (expected digit, 64 pixels).
fn golden_digits() -> Vec<(u64, serde_json::Value)> {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("guests/digits/testdata/golden.json")).unwrap()).unwrap();
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| (case["digit"].as_u64().unwrap(), case["pixels"].clone()))
        .collect()
}

#[test]
fn python_and_javascript_components_answer_what_the_rust_app_answers() {
    let data = scratch("languages");
    let gateway = start(&data, &[]);
    let model = std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap();
    let manifest = |name: &str| {
        format!(
            "name = \"{name}\"\nwasm = \"x.wasm\"\n[[bundled_models]]\nname = \"digits\"\nfile = \"model/digits.onnx\"\nbackend = \"tract\"\n[limits]\nmemory_mib = 128\n[config]\nbackend = \"ort\"\n"
        )
    };
    for name in ["digits-py", "digits-js"] {
        let wasm = std::fs::read(component_wasm(name)).unwrap();
        let (status, json) = deploy(&gateway, name, &manifest(name), &wasm, &[("model/digits.onnx", &model)]);
        assert_eq!(status, 201, "{name}: {json}");
        assert_eq!(json["deployed"]["abi"], "component", "{json}");
    }
    for (digit, pixels) in golden_digits() {
        let body = serde_json::json!({ "pixels": pixels });
        // The Rust WAGI app (started with the gateway from guests/digits) is the reference.
        let (status, rust) = post_json(&gateway, "/v1/digits?backend=tract", &body);
        assert_eq!((status, rust["digit"].as_u64()), (200, Some(digit)), "{rust}");
        for name in ["digits-py", "digits-js"] {
            for backend in ["tract", "ort"] {
                let (status, json) = post_json(&gateway, &format!("/apps/{name}?backend={backend}"), &body);
                assert_eq!(status, 200, "{name} on {backend}: {json}");
                assert_eq!(json["digit"].as_u64(), Some(digit), "{name} on {backend}: {json}");
                let probabilities = |v: &serde_json::Value| -> Vec<f64> {
                    v["probabilities"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect()
                };
                for (ours, reference) in probabilities(&json).iter().zip(probabilities(&rust)) {
                    assert!((ours - reference).abs() < 1e-4, "{name} on {backend}: {json} vs {rust}");
                }
            }
        }
    }
    // A bad request is a 400, a model the app does not have a 404, in both languages.
    for name in ["digits-py", "digits-js"] {
        let (status, json) = post_json(&gateway, &format!("/apps/{name}"), &serde_json::json!({ "pixels": [1, 2] }));
        assert_eq!(status, 400, "{name}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
        let (status, json) =
            post_json(&gateway, &format!("/apps/{name}?model=nope"), &serde_json::json!({ "pixels": vec![0; 64] }));
        assert_eq!(status, 404, "{name}: {json}");
    }
    gateway.kill();
}
