//! A hostile tenant and a hostile client against a real gateway on loopback: each test is an
//! attack that once worked (see DESIGN.md, "Threat model"), and asserts the limit that now
//! stops it. Timing bounds are generous (seconds around sub-second deadlines): they tell a
//! bounded request from one that runs to its end, not how fast the machine is.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOKEN: &str = "hostile-token-91c2";

fn scratch_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{}", std::process::id()))
}

/// An app directory for a test program, under this run's scratch directory.
fn app(name: &str, program: &str, extra: &str, files: &[(&str, &[u8])]) -> PathBuf {
    app_dir(&scratch_root().join("apps"), name, program, extra, files)
}

/// One gateway with every hostile app and the admin API.
fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        // ~400 GFLOP: many seconds on any CPU, unless stopped.
        let slow_ort = onnx::slow_matmul_chain(512, 1024, 400);
        // ~120 GFLOP on tract, which cannot be stopped once it runs: seconds on this machine.
        let slow_tract = onnx::slow_matmul_chain(512, 1024, 120);
        let apps = [
            app("echo", "echo", "routes = [\"/v1/echo\"]", &[]),
            app("sleepy", "sleepy", "[limits]\ndeadline_ms = 500", &[]),
            app("abuse", "nn-abuse", "models = [\"wordlm\"]\n[limits]\nmemory_mib = 64", &[]),
            app("gather", "nn-tensor", "models = [\"wordlm\"]", &[]),
            app(
                "slow-ort",
                "nn-tensor",
                "[[bundled_models]]\nname = \"slow\"\nfile = \"slow.onnx\"\nbackend = \"ort\"\n[limits]\ndeadline_ms = 500\nmemory_mib = 128",
                &[("slow.onnx", &slow_ort)],
            ),
            app(
                "slow-tract",
                "nn-tensor",
                "[[bundled_models]]\nname = \"slow\"\nfile = \"slow.onnx\"\nbackend = \"tract\"\n[limits]\ndeadline_ms = 300\nmemory_mib = 128\nmax_concurrency = 1",
                &[("slow.onnx", &slow_tract)],
            ),
            app("spin", "spin-forever", "[limits]\ndeadline_ms = 1500\nmax_concurrency = 2", &[]),
            app("stall", "echo", "[limits]\nmax_concurrency = 2", &[]),
        ];
        let mut args: Vec<&str> = vec!["--no-warm-up", "--admin-token", TOKEN, "--max-upload-mib", "4", "--body-timeout-secs", "2"];
        args.extend(["--header-timeout-secs", "2"]);
        let dirs: Vec<&Path> = apps.iter().map(PathBuf::as_path).collect();
        Gateway::start(&dirs, &args)
    })
}

fn call(method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let url = gateway().url(path);
    let agent = agent();
    let response = match method {
        "GET" => agent.get(&url).call(),
        "DELETE" => agent.delete(&url).header("authorization", &format!("Bearer {TOKEN}")).call(),
        "ADMIN-GET" => agent.get(&url).header("authorization", &format!("Bearer {TOKEN}")).call(),
        _ => agent.post(&url).header("content-type", "application/octet-stream").send(body),
    };
    json_of(response)
}

fn echo_ok() {
    let (status, json) = call("GET", "/apps/echo", b"");
    assert_eq!(status, 200, "the gateway stopped serving: {json}");
}

fn metric(name: &str) -> f64 {
    let mut response = agent().get(&gateway().url("/metrics")).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn f32_body(values: usize) -> Vec<u8> {
    (0..values).flat_map(|_| 1.0f32.to_le_bytes()).collect()
}

/// Writes `head` (and `body`) on a raw connection and reads until the server closes it or
/// `within` passes: (what was read, whether the server closed the connection).
fn raw_exchange(head: &str, body: &[u8], within: Duration) -> (String, bool) {
    let address = gateway().base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut read = Vec::new();
    let closed = stream.read_to_end(&mut read).is_ok();
    (String::from_utf8_lossy(&read).into_owned(), closed)
}

// --- 1. The admin API cannot touch the host's directories -------------------------------

#[test]
fn admin_names_never_reach_the_filesystem() {
    let outside = scratch_root().join("precious");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), b"keep").unwrap();
    let absolute = outside.display().to_string().replace('/', "%2F");
    for name in [absolute.as_str(), "..", "%2E%2E", "%2E%2E%2F%2E%2E%2Fprecious", ".hidden", "a%2Fb"] {
        for method in ["DELETE", "ADMIN-GET"] {
            let (status, json) = call(method, &format!("/admin/apps/{name}"), b"");
            assert!(status == 400 || status == 404, "{method} {name}: {status} {json}");
            assert!(json["kind"].is_string(), "{json}");
        }
    }
    assert!(outside.join("keep.txt").is_file(), "a directory outside the data directory was deleted");
}

// --- 2. Deadlines bound host calls ------------------------------------------------------

/// Calls `path` and asserts it is answered 504 `deadline_exceeded` within `within`.
fn assert_stopped_within(method: &str, path: &str, body: &[u8], within: Duration, why: &str) {
    let started = Instant::now();
    let (status, json) = call(method, path, body);
    let elapsed = started.elapsed();
    assert!(elapsed < within, "answered after {elapsed:?}; {why}");
    assert_eq!(status, 504, "{json}");
    assert_eq!(json["kind"], "deadline_exceeded", "{json}");
}

#[test]
fn a_guest_sleeping_in_the_host_is_stopped_at_its_deadline() {
    // Started first, so that its start-up is not timed.
    gateway();
    let why = "the guest asked for 8 s, its deadline is 0.5 s";
    assert_stopped_within("GET", "/apps/sleepy?ms=8000", b"", Duration::from_secs(4), why);
    // A short sleep within the deadline is served.
    let (status, json) = call("GET", "/apps/sleepy?ms=10", b"");
    assert_eq!((status, json["slept_ms"].as_u64()), (200, Some(10)), "{json}");
}

#[test]
fn a_long_onnx_runtime_inference_is_terminated_at_the_deadline() {
    let body = f32_body(512 * 1024);
    gateway();
    for _ in 0..2 {
        let why = "deadline 0.5 s, the full run takes far longer";
        let path = "/apps/slow-ort?model=slow&shape=512,1024&type=f32";
        assert_stopped_within("POST", path, &body, Duration::from_secs(4), why);
    }
    echo_ok();
}

#[test]
fn a_tract_inference_that_cannot_be_stopped_is_answered_at_the_deadline_and_holds_the_apps_turn() {
    let body = f32_body(512 * 1024);
    gateway();
    let path = "/apps/slow-tract?model=slow&shape=512,1024&type=f32";
    assert_stopped_within("POST", path, &body, Duration::from_secs(2), "deadline 0.3 s");
    // Until the first run is done its thread keeps the app's only turn: the next request waits
    // its deadline for it and is refused, or, once that run is over, is refused at once
    // because a run takes longer than its deadline. It never runs past its deadline.
    for _ in 0..3 {
        let started = Instant::now();
        let (status, json) = call("POST", path, &body);
        assert!(status == 429 || status == 504, "{status} {json}");
        assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    }
    echo_ok();
}

// --- 3. Host memory a guest causes is charged to it --------------------------------------

#[test]
fn tensors_the_host_keeps_count_against_the_apps_memory_limit() {
    // 32 contexts x 16 MiB would be 512 MiB on the host for a 64 MiB app.
    let (status, json) = call("GET", "/apps/abuse?do=inputs&model=wordlm&n=32&mib=16", b"");
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["kind"], "memory_limit", "{json}");
    // Within the limit it works.
    let (status, json) = call("GET", "/apps/abuse?do=inputs&model=wordlm&n=2&mib=8", b"");
    assert_eq!(status, 200, "{json}");
    echo_ok();
}

#[test]
fn handles_are_bounded_per_instance() {
    let (status, json) = call("GET", "/apps/abuse?do=contexts&model=wordlm&n=100000", b"");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["created"], 32, "{json}");
    assert_eq!(json["errno"], 7, "too_large once the cap is reached: {json}");
    let (status, json) = call("GET", "/apps/abuse?do=graphs&model=wordlm&n=1000", b"");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["distinct_handles"], 1, "{json}");
}

// --- 9. Hostile pointers and backend panics are wasi-nn errors ---------------------------

#[test]
fn bad_pointers_are_errnos_and_backend_panics_are_counted_traps() {
    let (status, json) = call("GET", "/apps/abuse?do=pointers&model=wordlm", b"");
    assert_eq!(status, 200, "{json}");
    for (call, errno) in json["errnos"].as_object().unwrap() {
        assert!(errno.as_i64().unwrap() > 0, "{call} succeeded with bad arguments: {json}");
    }
    // Token ids far outside the vocabulary: tract's Gather panics on them.
    let traps = metric("edgenn_guest_traps_total");
    let tokens: Vec<u8> = [1_000_000_000i32; 32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (status, json) = call("POST", "/apps/gather?model=wordlm@tract&shape=1,32&type=i32", &tokens);
    assert_eq!(status, 422, "the guest gets a wasi-nn error and answers it: {json}");
    assert_eq!(json["wasi_nn_error"], 5, "{json}");
    assert!(metric("edgenn_guest_traps_total") > traps, "the panic was not counted");
    echo_ok();
}

// --- 4. Uploads cannot rewrite what was validated ----------------------------------------

/// Sent while the answer is read: the gateway may refuse an upload before it has read all of it.
fn upload(name: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, serde_json::Value) {
    let (content_type, body) = multipart_parts(parts);
    let head = format!(
        "PUT /admin/apps/{name} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let address = gateway().base.trim_start_matches("http://").to_string();
    let answer = send_while_reading(&address, &head, body);
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = answer.split_once("\r\n\r\n").and_then(|(_, body)| serde_json::from_str(body).ok());
    (status, json.unwrap_or(serde_json::Value::Null))
}

#[test]
fn an_upload_cannot_overwrite_its_manifest_or_take_another_apps_name() {
    let echo = std::fs::read(guest_wasm("echo")).unwrap();
    let manifest = b"name = \"tenant-a\"\nwasm = \"x.wasm\"\n";
    let takeover = b"name = \"echo\"\nroutes = [\"/v1/stolen\"]\nwasm = \"/etc/passwd\"\n";
    for file_name in ["./edgenn.toml", "edgenn.toml", "./app.wasm", "sub/../edgenn.toml"] {
        let (status, json) = upload(
            "tenant-a",
            &[("manifest", None, manifest), ("wasm", None, &echo), ("file", Some(file_name), takeover)],
        );
        assert_eq!(status, 400, "{file_name}: {json}");
    }
    let (status, json) = upload("tenant-a", &[("manifest", None, takeover), ("wasm", None, &echo)]);
    assert_eq!(status, 400, "a manifest naming another app: {json}");
    assert_eq!(call("GET", "/v1/stolen", b"").0, 404);
    let (status, json) = upload("tenant-a", &[("manifest", None, manifest), ("wasm", None, &echo)]);
    assert_eq!(status, 201, "{json}");
    let (status, json) = call("ADMIN-GET", "/admin/apps/tenant-a", b"");
    assert_eq!((status, json["manifest"]["wasm"].as_str()), (200, Some("app.wasm")), "{json}");
    assert_eq!(call("DELETE", "/admin/apps/tenant-a", b"").0, 200);
}

#[test]
fn a_tampered_stored_app_is_not_restored() {
    let data = scratch_root().join("tampered-data");
    let _ = std::fs::remove_dir_all(&data);
    let version = data.join("apps/innocent/v1-1-0");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::copy(guest_wasm("echo"), version.join("app.wasm")).unwrap();
    std::fs::write(
        version.join("edgenn.toml"),
        "name = \"echo-clone\"\nroutes = [\"/v1/clone\"]\nwasm = \"app.wasm\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("v1-1-0", data.join("apps/innocent/current")).unwrap();
    let other = data.join("apps/pointer/v1-1-0");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("edgenn.toml"),
        format!("name = \"pointer\"\nwasm = \"{}\"\n", guest_wasm("echo").display()),
    )
    .unwrap();
    std::os::unix::fs::symlink("v1-1-0", data.join("apps/pointer/current")).unwrap();
    let gateway = Gateway::start(&[], &["--no-warm-up", "--data-dir", data.to_str().unwrap()]);
    for path in ["/v1/clone", "/apps/echo-clone", "/apps/innocent", "/apps/pointer"] {
        let (status, json) = json_of(agent().get(&gateway.url(path)).call());
        assert_eq!(status, 404, "{path} is served: {json}");
    }
}

// --- 5. Slow and large bodies are bounded ------------------------------------------------

#[test]
fn a_client_that_sends_no_headers_is_disconnected() {
    gateway();
    let started = Instant::now();
    let (read, closed) = raw_exchange("GET /healthz HTTP/1.1\r\nhost: x\r\n", b"", Duration::from_secs(20));
    assert!(closed, "the connection is still open after 20 s: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "closed after {:?}", started.elapsed());
}

#[test]
fn a_stalled_body_is_answered_408_and_holds_only_its_apps_turns() {
    let head = "POST /apps/stall HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\nconnection: close\r\n\r\n";
    // Three stalled uploads to an app with two turns: the third waits or is refused, the
    // first two time out with 408; other apps are served meanwhile.
    let stalled: Vec<_> =
        (0..3).map(|_| std::thread::spawn(move || raw_exchange(head, b"partial", Duration::from_secs(30)).0)).collect();
    std::thread::sleep(Duration::from_millis(300));
    echo_ok();
    let answers: Vec<String> = stalled.into_iter().map(|t| t.join().unwrap()).collect();
    let timed_out = answers.iter().filter(|a| a.starts_with("HTTP/1.1 408")).count();
    assert!(timed_out >= 2, "{answers:?}");
    assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 408") || a.starts_with("HTTP/1.1 429")), "{answers:?}");
    assert!(answers.iter().all(|a| a.contains("\"kind\"")), "{answers:?}");
}

#[test]
fn requests_beyond_the_limit_in_flight_are_shed_with_503() {
    let data = scratch_root().join("shed-data");
    let gateway = Gateway::start(
        &[Path::new("guests/predict")],
        &[
            "--no-warm-up",
            "--data-dir",
            data.to_str().unwrap(),
            "--max-requests-in-flight",
            "3",
            "--body-timeout-secs",
            "5",
        ],
    );
    let address = gateway.base.trim_start_matches("http://").to_string();
    let head = "POST /apps/predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n";
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut response = agent().get(&gateway.url("/healthz")).call().unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("\"overloaded\""), "{text}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = agent().get(&gateway.url("/healthz")).call().unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after the stalled requests went away");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stalled_admin_upload_does_not_block_other_deploys() {
    let head = format!(
        "PUT /admin/apps/stalled HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: multipart/form-data; boundary=b\r\ncontent-length: 1000000\r\n\r\n--b\r\n"
    );
    let address = gateway().base.trim_start_matches("http://").to_string();
    let mut stalled = TcpStream::connect(&address).unwrap();
    stalled.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let echo = std::fs::read(guest_wasm("echo")).unwrap();
    let started = Instant::now();
    let (status, json) =
        upload("unblocked", &[("manifest", None, b"name = \"unblocked\"\nwasm = \"x.wasm\"\n"), ("wasm", None, &echo)]);
    assert_eq!(status, 201, "{json}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deploy waited {:?} for a stalled upload",
        started.elapsed()
    );
    assert_eq!(call("DELETE", "/admin/apps/unblocked", b"").0, 200);
    drop(stalled);
}

// --- 6. One app cannot starve the others -------------------------------------------------

#[test]
fn a_flood_on_one_app_is_refused_for_that_app_only() {
    gateway();
    let flood: Vec<_> = (0..10).map(|_| std::thread::spawn(|| call("GET", "/apps/spin", b""))).collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        echo_ok();
        assert!(started.elapsed() < Duration::from_secs(3), "echo took {:?} during the flood", started.elapsed());
    }
    let statuses: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap().0).collect();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert!(refused >= 5, "two run and two wait, the rest are refused: {statuses:?}");
    assert!(statuses.iter().all(|&s| s == 429 || s == 504), "{statuses:?}");
}

// --- 8. Long paths cost linear time and are bounded --------------------------------------

#[test]
fn long_paths_are_refused_and_cheap() {
    // Over a raw connection: HTTP clients refuse to send such a URI at all.
    // Under hyper's own bound (64 KiB, answered 414 without a body), over the gateway's.
    let long = "/a".repeat(8 * 1024);
    let (answer, _) = raw_exchange(
        &format!("GET {long} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        b"",
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("\"uri_too_long\""), "{answer}");
    let below_limit = "/a".repeat(4000);
    gateway();
    let started = Instant::now();
    for _ in 0..20 {
        let (status, json) = call("GET", &below_limit, b"");
        assert_eq!(status, 404, "{json}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "20 lookups took {:?}", started.elapsed());
    echo_ok();
}

// --- 10. Routes cannot overlap another app's or a built-in -------------------------------

#[test]
fn routes_that_overlap_another_app_or_a_built_in_are_refused() {
    let echo = std::fs::read(guest_wasm("echo")).unwrap();
    for (route, expected, owner) in [
        ("/v1/echo/sub", 422, "echo"),
        ("/v1", 422, "echo"),
        ("/v1/echo", 422, "echo"),
        ("/healthz", 400, "health"),
        ("/v1/models", 400, "model list"),
        ("/demo/x", 400, "demo"),
    ] {
        let manifest = format!("name = \"claimer\"\nroutes = [\"{route}\"]\nwasm = \"x.wasm\"\n");
        let (status, json) = upload("claimer", &[("manifest", None, manifest.as_bytes()), ("wasm", None, &echo)]);
        assert_eq!(status, expected, "{route}: {json}");
        assert!(json["error"].as_str().unwrap().contains(owner), "{route}: {json}");
    }
    let (status, _) = call("GET", "/v1/echo/x", b"");
    assert_eq!(status, 200);
}

// --- 11. Admin errors are right and JSON -------------------------------------------------

#[test]
fn admin_errors_are_json_with_the_right_status() {
    let echo = std::fs::read(guest_wasm("echo")).unwrap();
    let manifest = b"name = \"big\"\nwasm = \"x.wasm\"\n[[bundled_models]]\nname = \"m\"\nfile = \"m.onnx\"\nbackend = \"tract\"\n";
    let big = vec![0u8; 5 << 20];
    let (content_type, body) =
        multipart_parts(&[("manifest", None, manifest), ("wasm", None, &echo), ("file", Some("m.onnx"), &big)]);
    // Sent from another thread while the answer is read: the gateway answers before it has
    // read all of an upload over its limit.
    let head = format!(
        "PUT /admin/apps/big HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let address = gateway().base.trim_start_matches("http://").to_string();
    let answer = send_while_reading(&address, &head, body);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
    let response = agent()
        .put(&gateway().url("/admin/apps/bad"))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .header("content-type", "multipart/form-data")
        .send(&b"no boundary"[..]);
    let (status, json) = json_of(response);
    assert_eq!((status, json["kind"].as_str()), (400, Some("bad_request")), "{json}");
    let keys: String = (0..100_000).map(|i| format!("k{i} = \"v\"\n")).collect();
    let manifest = format!("name = \"configs\"\nwasm = \"x.wasm\"\n[config]\n{keys}");
    let (status, json) = upload("configs", &[("manifest", None, manifest.as_bytes()), ("wasm", None, &echo)]);
    assert_eq!(status, 400, "{json}");
    assert!(json["error"].as_str().unwrap().contains("keys"), "{json}");
}
