//! A fleet of gateways fed from a real registry (`common::registry`): three gateways follow one
//! fleet file listing a shared model and an app with a bundled model; a new version pushed and named in the file reaches all of them while clients
//! keep requesting (no error, no old answer once a gateway has the new one); with the registry
//! stopped they keep serving and a restarted one comes back from its cache; a tampered blob is
//! refused and the old version serves on; an app the file no longer lists goes.

mod common;
use common::registry::Registry;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a change may take to reach every gateway: a few polls (200 ms) and a deploy.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(20);

/// A directory of this test's own (the tests of this file run at once, in one process).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fleet-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The echo test program as app `hello` at `/v1/hello`, answering its `version` config, with
/// the digits model bundled (loaded when it is deployed) and the fleet's shared model declared.
fn hello(root: &Path, version: &str) -> PathBuf {
    let extra = format!(
        "routes = [\"/v1/hello\"]\nmodels = [\"digits-shared\"]\n[[bundled_models]]\nname = \"digits\"\nfile = \"model/digits.onnx\"\nbackend = \"tract\"\n[config]\nversion = \"{version}\""
    );
    let onnx = std::fs::read(repo().join("guests/digits/model/digits.onnx")).unwrap();
    app_dir(&root.join(version), "hello", "echo", &extra, &[("model/digits.onnx", &onnx)])
}

fn push(args: &[&str]) -> String {
    let (ok, stdout, stderr) = edgenn(args);
    assert!(ok, "edgenn {args:?} failed:\n{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    json["digest"].as_str().unwrap().to_string()
}

/// Writes the fleet file as a ConfigMap update does: a whole new file renamed into place.
fn write_fleet(file: &Path, registry: &Registry, app_tag: Option<&str>) {
    let apps = app_tag.map(|tag| format!("\"{}/apps/hello:{tag}\"", registry.address)).unwrap_or_default();
    let text = format!("models = [\"{}/models/digits-shared:1\"]\napps = [{apps}]\n", registry.address);
    let temporary = file.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, file).unwrap();
}

fn start(file: &Path, cache: &Path) -> Gateway {
    start_with(&[], file, cache, &[])
}

/// A gateway following the fleet `file`, with `apps` of its own and `extra` arguments.
fn start_with(apps: &[&Path], file: &Path, cache: &Path, extra: &[&str]) -> Gateway {
    let (file, cache) = (file.to_str().unwrap(), cache.to_str().unwrap());
    let args = ["--no-warm-up", "--fleet", file, "--fleet-cache", cache, "--fleet-poll-ms", "200"];
    Gateway::start(apps, &[&args[..], extra].concat())
}

/// Pushes `artifact` to `reference`, as `edgenn push` does, for an artifact made in the test.
fn publish(artifact: &edgenn::oci::Artifact, reference: &str) {
    tokio::runtime::Runtime::new().unwrap().block_on(edgenn::oci::registry::push(artifact, reference)).unwrap();
}

/// Packs the app in `dir` and pushes it to `reference`.
fn publish_app(dir: &Path, reference: &str) {
    publish(&edgenn::oci::pack_app(dir).unwrap(), reference);
}

/// What `/v1/hello` answers: status and version.
fn version(gateway: &Gateway) -> (u16, Option<String>) {
    match agent().get(&gateway.url("/v1/hello")).call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let json: serde_json::Value =
                serde_json::from_str(&response.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default();
            (status, json["env"]["EDGENN_CONFIG_VERSION"].as_str().map(String::from))
        }
        Err(_) => (0, None),
    }
}

fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

fn ready(gateway: &Gateway) -> (u16, serde_json::Value) {
    json_of(agent().get(&gateway.url("/v2/health/ready")).call())
}

fn metric(gateway: &Gateway, name: &str) -> f64 {
    let text = agent().get(&gateway.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

#[test]
fn a_fleet_converges_from_a_registry_keeps_serving_offline_and_refuses_tampered_blobs() {
    let root = scratch("converges");
    let mut registry = Registry::start(&root.join("registry"));
    let model = root.join("digits-model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(repo().join("guests/digits/model/digits.onnx"), model.join("digits.onnx")).unwrap();
    let manifest = "name = \"digits-shared\"\nfile = \"digits.onnx\"\nbackend = \"tract\"\n";
    std::fs::write(model.join("model.toml"), manifest).unwrap();
    push(&["push", "--model", model.to_str().unwrap(), &format!("{}/models/digits-shared:1", registry.address)]);
    push(&["push", hello(&root, "one").to_str().unwrap(), &format!("{}/apps/hello:1", registry.address)]);
    let fleet = root.join("fleet.toml");
    write_fleet(&fleet, &registry, Some("1"));

    let caches: Vec<PathBuf> = (0..3).map(|i| root.join(format!("cache-{i}"))).collect();
    let mut gateways: Vec<Gateway> = caches.iter().map(|cache| start(&fleet, cache)).collect();
    for gateway in &gateways {
        wait_for("the first version", CONVERGENCE_BOUND, || version(gateway).1.as_deref() == Some("one"));
        wait_for("readiness", CONVERGENCE_BOUND, || ready(gateway).0 == 200);
        let (status, json) = json_of(agent().get(&gateway.url("/v2/models/digits-shared")).call());
        assert_eq!(status, 200, "the fleet's model is served: {json}");
    }

    // A new version, named in the fleet file while clients keep requesting every gateway.
    push(&["push", hello(&root, "two").to_str().unwrap(), &format!("{}/apps/hello:2", registry.address)]);
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Vec<Vec<(u16, Option<String>)>> = std::thread::scope(|scope| {
        let clients: Vec<_> = gateways
            .iter()
            .map(|gateway| {
                let stop = stop.clone();
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        seen.push(version(gateway));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        write_fleet(&fleet, &registry, Some("2"));
        let took = wait_for("the new version everywhere", CONVERGENCE_BOUND, || {
            gateways.iter().all(|gateway| version(gateway).1.as_deref() == Some("two"))
        });
        println!("three gateways converged on the new version in {took:?} (poll 200 ms)");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().map(|client| client.join().unwrap()).collect()
    });
    for seen in &answers {
        assert!(seen.iter().all(|(status, _)| *status == 200), "an error while converging: {seen:?}");
        let first_new = seen.iter().position(|(_, v)| v.as_deref() == Some("two")).expect("the new version");
        assert!(seen[first_new..].iter().all(|(_, v)| v.as_deref() == Some("two")), "old after new: {seen:?}");
    }

    // The registry goes away: every gateway keeps serving and says so; a restarted one comes
    // back from its cache.
    registry.stop();
    for gateway in &gateways {
        wait_for("the registry seen unreachable", CONVERGENCE_BOUND, || {
            ready(gateway).1["fleet"]["registry_reachable"] == false
        });
        assert_eq!(version(gateway), (200, Some("two".to_string())));
        assert_eq!(metric(gateway, "edgenn_fleet_registry_reachable"), 0.0);
    }
    gateways.remove(0).kill();
    gateways.insert(0, start(&fleet, &caches[0]));
    wait_for("a restart served from the cache", CONVERGENCE_BOUND, || {
        version(&gateways[0]).1.as_deref() == Some("two")
    });
    wait_for("ready from the cache", CONVERGENCE_BOUND, || ready(&gateways[0]).0 == 200);

    // A version whose manifest blob is tampered with in the registry's storage is refused
    // everywhere; the old one serves on and the gateways are not ready.
    registry.resume();
    let three = hello(&root, "three");
    push(&["push", three.to_str().unwrap(), &format!("{}/apps/hello:3", registry.address)]);
    let stored = edgenn::oci::pack_app(&three).unwrap();
    let manifest_layer = stored.layers.iter().find(|l| l.title == Path::new("edgenn.toml")).unwrap();
    let blob = registry.blob(&edgenn::oci::sha256_digest(&manifest_layer.data));
    assert!(blob.is_file(), "{}", blob.display());
    std::fs::write(&blob, String::from_utf8_lossy(&manifest_layer.data).replace("three", "evil!")).unwrap();
    let failures_before: Vec<f64> = gateways.iter().map(|g| metric(g, "edgenn_fleet_pull_failures_total")).collect();
    write_fleet(&fleet, &registry, Some("3"));
    for (gateway, before) in gateways.iter().zip(failures_before) {
        wait_for("the tampered version refused", CONVERGENCE_BOUND, || {
            metric(gateway, "edgenn_fleet_pull_failures_total") > before
        });
        assert_eq!(version(gateway), (200, Some("two".to_string())), "the old version serves on");
        let (status, json) = ready(gateway);
        assert_eq!((status, &json["fleet"]["converged"]), (503, &serde_json::json!(false)), "{json}");
    }
    // An app the file no longer lists is taken out of service everywhere.
    write_fleet(&fleet, &registry, None);
    for gateway in &gateways {
        wait_for("the unlisted app removed", CONVERGENCE_BOUND, || version(gateway).0 == 404);
        wait_for("ready again", CONVERGENCE_BOUND, || ready(gateway).0 == 200);
    }
    for gateway in gateways {
        gateway.kill();
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A registry that lies: every request is answered 200 with `Docker-Content-Digest: digest`.
fn lying_registry(digest: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ndocker-content-digest: {digest}\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    address
}

#[test]
fn a_fleet_takes_no_path_from_a_registry_or_an_artifact() {
    let root = scratch("no-paths");
    let registry = Registry::start(&root.join("registry"));
    // An honest app, served: the fleet works here.
    let honest = format!("{}/apps/honest:1", registry.address);
    let app = app_dir(&root, "honest", "echo", "routes = [\"/v1/honest\"]", &[]);
    publish_app(&app, &honest);
    // An artifact whose manifest names a module of the host (a valid one) instead of its own.
    let app = app_dir(&root, "crafted", "echo", "routes = [\"/v1/crafted\"]", &[]);
    let mut artifact = edgenn::oci::pack_app(&app).unwrap();
    let manifest = artifact.layers.iter_mut().find(|l| l.title == Path::new("edgenn.toml")).unwrap();
    let text = String::from_utf8(manifest.data.clone()).unwrap();
    let host_module = guest_wasm("echo").display().to_string();
    manifest.data = text.replace("wasm = \"app.wasm\"", &format!("wasm = {host_module:?}")).into_bytes();
    assert!(String::from_utf8_lossy(&manifest.data).contains(&host_module));
    let crafted = format!("{}/apps/crafted:1", registry.address);
    publish(&artifact, &crafted);
    // A folder of the host with an app in it, and a registry whose digest for a tag points
    // there from the fleet's cache (`<cache>/artifacts/../../planted`).
    app_dir(&root, "planted", "echo", "routes = [\"/v1/planted\"]", &[]);
    let liar = lying_registry("../../planted");
    let fleet = root.join("fleet.toml");
    std::fs::write(&fleet, format!("apps = [\"{honest}\", \"{crafted}\", \"{liar}/apps/planted:1\"]\n")).unwrap();
    let gateway = start(&fleet, &root.join("cache"));
    let status = |path: &str| json_of(agent().get(&gateway.url(path)).call()).0;
    wait_for("the honest app served", CONVERGENCE_BOUND, || status("/v1/honest") == 200);
    wait_for("both lies refused", CONVERGENCE_BOUND, || metric(&gateway, "edgenn_fleet_pull_failures_total") >= 2.0);
    assert_eq!(status("/v1/crafted"), 404, "the crafted app ran a module of the host");
    assert_eq!(status("/v1/planted"), 404, "a folder of the host was deployed");
    let (code, json) = ready(&gateway);
    assert_eq!((code, &json["fleet"]["converged"]), (503, &serde_json::json!(false)), "{json}");
    gateway.kill();
}

/// How the registry of [`serving_registry`] sends the blob of an artifact's module.
#[derive(Clone, Copy, PartialEq)]
enum ModuleBlob {
    /// More bytes than its descriptor declares: a gigabyte, for as long as the client reads.
    Endless,
    /// Its headers, then nothing, ever.
    Stalled,
    /// A descriptor declaring 100 GiB.
    Declared100GiB,
}

/// A registry serving `artifact` (its manifest, config and layers) under any name, except
/// that the module's blob is sent as `module` says. Counts the blob requests it gets.
fn serving_registry(artifact: edgenn::oci::Artifact, module: ModuleBlob) -> (String, Arc<AtomicUsize>) {
    use edgenn::oci::{TITLE, sha256_digest};
    use std::io::{BufRead, BufReader, Write};
    let descriptor = |media_type: &str, data: &[u8], title: Option<&Path>| {
        let mut d = serde_json::json!({"mediaType": media_type, "digest": sha256_digest(data), "size": data.len()});
        if let Some(title) = title {
            d["annotations"] = serde_json::json!({ TITLE: title.display().to_string() });
        }
        d
    };
    let mut layers: Vec<serde_json::Value> =
        artifact.layers.iter().map(|l| descriptor(l.media_type, &l.data, Some(&l.title))).collect();
    let module_digest = sha256_digest(&artifact.layers[0].data);
    if module == ModuleBlob::Declared100GiB {
        layers[0]["size"] = serde_json::json!(100u64 << 30);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(artifact.config_media_type, &artifact.config, None),
        "layers": layers,
    }))
    .unwrap();
    let mut blobs: Vec<(String, Vec<u8>)> =
        artifact.layers.iter().map(|l| (sha256_digest(&l.data), l.data.clone())).collect();
    blobs.push((sha256_digest(&artifact.config), artifact.config.clone()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let blob_requests = Arc::new(AtomicUsize::new(0));
    let counted = blob_requests.clone();
    let blobs = Arc::new(blobs);
    let manifest = Arc::new(manifest);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (blobs, manifest, counted, module_digest) =
                (blobs.clone(), manifest.clone(), counted.clone(), module_digest.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                    }
                    let (status, content_type, body): (&str, &str, Vec<u8>) = if path.contains("/manifests/") {
                        ("200 OK", "application/vnd.oci.image.manifest.v1+json", manifest.to_vec())
                    } else if let Some(digest) = path.split("/blobs/").nth(1) {
                        counted.fetch_add(1, Ordering::SeqCst);
                        if digest == module_digest {
                            match module {
                                ModuleBlob::Stalled => {
                                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");
                                    std::thread::sleep(Duration::from_secs(600));
                                    return;
                                }
                                ModuleBlob::Endless => {
                                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n");
                                    let chunk = vec![0u8; 1 << 16];
                                    for _ in 0..(1 << 14) {
                                        if stream.write_all(&chunk).is_err() {
                                            return;
                                        }
                                    }
                                    return;
                                }
                                ModuleBlob::Declared100GiB => {}
                            }
                        }
                        match blobs.iter().find(|(d, _)| d == digest) {
                            Some((_, data)) => ("200 OK", "application/octet-stream", data.clone()),
                            None => ("404 Not Found", "text/plain", Vec::new()),
                        }
                    } else {
                        ("200 OK", "application/json", b"{}".to_vec())
                    };
                    let digest = sha256_digest(&body);
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ndocker-content-digest: {digest}\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    if method != "HEAD" {
                        let _ = stream.write_all(&body);
                    }
                }
            });
        }
    });
    (address, blob_requests)
}

#[test]
fn a_fleet_streams_blobs_within_their_declared_size_and_a_stalled_one_delays_only_its_app() {
    let root = scratch("streams");
    let registry = Registry::start(&root.join("registry"));
    let honest = format!("{}/apps/honest:1", registry.address);
    let app = app_dir(&root, "honest", "echo", "routes = [\"/v1/honest\"]", &[]);
    publish_app(&app, &honest);
    let liar = |name: &str, module: ModuleBlob| {
        let app = app_dir(&root, name, "echo", &format!("routes = [\"/v1/{name}\"]"), &[]);
        let (address, blob_requests) = serving_registry(edgenn::oci::pack_app(&app).unwrap(), module);
        (format!("{address}/apps/{name}:1"), blob_requests)
    };
    let (endless, _) = liar("endless", ModuleBlob::Endless);
    let (stalled, _) = liar("stalled", ModuleBlob::Stalled);
    let (declared, declared_blobs) = liar("declared", ModuleBlob::Declared100GiB);
    let fleet = root.join("fleet.toml");
    std::fs::write(&fleet, format!("apps = [\"{stalled}\", \"{endless}\", \"{declared}\", \"{honest}\"]\n")).unwrap();
    let gateway = start_with(&[], &fleet, &root.join("cache"), &["--fleet-read-timeout-secs", "3"]);
    let status = |path: &str| json_of(agent().get(&gateway.url(path)).call()).0;
    // Listed last, behind a blob that never comes: served all the same.
    let took =
        wait_for("the honest app served beside the stalled one", CONVERGENCE_BOUND, || status("/v1/honest") == 200);
    println!("the honest app was served {took:?} after start, beside a stalled blob");
    wait_for("the three lies refused", CONVERGENCE_BOUND, || {
        metric(&gateway, "edgenn_fleet_pull_failures_total") >= 3.0
    });
    for name in ["endless", "stalled", "declared"] {
        assert_eq!(status(&format!("/v1/{name}")), 404, "{name} was served");
    }
    assert_eq!(declared_blobs.load(Ordering::SeqCst), 0, "a blob of a 100 GiB artifact was asked for");
    let peak_mib = gateway.peak_rss_mib();
    println!("the gateway's peak RSS after the endless blob: {peak_mib:.0} MiB");
    assert!(peak_mib < 512.0, "the endless blob took {peak_mib:.0} MiB");
    let (code, json) = ready(&gateway);
    assert_eq!((code, &json["fleet"]["converged"]), (503, &serde_json::json!(false)), "{json}");
    gateway.kill();
}

#[test]
fn the_admin_api_cannot_replace_or_delete_an_app_the_fleet_serves() {
    const TOKEN: &str = "fleet-admin-token";
    let root = scratch("owned");
    let registry = Registry::start(&root.join("registry"));
    let owned = format!("{}/apps/owned:1", registry.address);
    let app =
        app_dir(&root.join("fleet"), "owned", "echo", "routes = [\"/v1/owned\"]\n[config]\nversion = \"fleet\"", &[]);
    publish_app(&app, &owned);
    let fleet = root.join("fleet.toml");
    std::fs::write(&fleet, format!("apps = [\"{owned}\"]\n")).unwrap();
    let gateway = start_with(&[], &fleet, &root.join("cache"), &["--admin-token", TOKEN]);
    let serving = || -> Option<String> {
        let (status, json) = json_of(agent().get(&gateway.url("/v1/owned")).call());
        (status == 200).then(|| json["env"]["EDGENN_CONFIG_VERSION"].as_str().unwrap_or_default().to_string())
    };
    wait_for("the fleet's app served", CONVERGENCE_BOUND, || serving().as_deref() == Some("fleet"));
    let authorized = |request: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
        request.header("authorization", &format!("Bearer {TOKEN}"))
    };
    // Deleted or replaced over the admin API: 409, and the fleet's version serves on.
    let (status, json) = json_of(authorized(agent().delete(&gateway.url("/admin/apps/owned"))).call());
    assert_eq!((status, json["kind"].as_str()), (409, Some("fleet_owned")), "{json}");
    let echo = std::fs::read(guest_wasm("echo")).unwrap();
    // Sent while the answer is read: the gateway refuses before it reads the upload.
    let admin_put = |name: &str| {
        let manifest =
            format!("name = \"{name}\"\nroutes = [\"/v1/{name}\"]\nwasm = \"x.wasm\"\n[config]\nversion = \"admin\"\n");
        let (content_type, body) = multipart_parts(&[("manifest", None, manifest.as_bytes()), ("wasm", None, &echo)]);
        let head = format!(
            "PUT /admin/apps/{name} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        send_while_reading(gateway.base.trim_start_matches("http://"), &head, body)
    };
    let answer = admin_put("owned");
    assert!(answer.starts_with("HTTP/1.1 409") && answer.contains("\"fleet_owned\""), "{answer}");
    assert_eq!(serving().as_deref(), Some("fleet"));
    // An app of another name is the admin's to deploy, beside the fleet's.
    let answer = admin_put("other");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    wait_for("ready", CONVERGENCE_BOUND, || ready(&gateway).0 == 200);
    gateway.kill();
}

#[test]
fn an_artifact_takes_only_the_name_it_was_published_under_and_never_a_built_in_one() {
    let root = scratch("names");
    let registry = Registry::start(&root.join("registry"));
    // An echo app named `classify`, published as `apps/innocent`, and as `apps/classify`.
    let impostor = app_dir(&root.join("impostor"), "classify", "echo", "", &[]);
    let innocent = format!("{}/apps/innocent:1", registry.address);
    let classify = format!("{}/apps/classify:1", registry.address);
    publish_app(&impostor, &innocent);
    publish_app(&impostor, &classify);
    let fleet = root.join("fleet.toml");
    std::fs::write(&fleet, format!("apps = [\"{innocent}\", \"{classify}\"]\n")).unwrap();
    let gateway = start_with(&[Path::new("guests/classify")], &fleet, &root.join("cache"), &[]);
    let real_classify = |gateway: &Gateway| {
        let response = agent().post(&gateway.url("/v1/classify?k=1")).header("content-type", "image/jpeg");
        let (status, json) = json_of(response.send(&test_data("chelsea.jpg")[..]));
        status == 200 && json["predictions"][0]["label"].is_string()
    };
    wait_for("both refused", CONVERGENCE_BOUND, || metric(&gateway, "edgenn_fleet_pull_failures_total") >= 2.0);
    assert!(real_classify(&gateway), "the built-in classify app was replaced");
    let (status, json) = ready(&gateway);
    assert_eq!((status, &json["fleet"]["converged"]), (503, &serde_json::json!(false)), "{json}");
    // Unlisted: the built-in app is still there.
    std::fs::write(&fleet, "apps = []\n").unwrap();
    wait_for("ready once nothing is listed", CONVERGENCE_BOUND, || ready(&gateway).0 == 200);
    assert!(real_classify(&gateway), "the built-in classify app is gone");
    gateway.kill();
}
