//! Starts the real `edgenn` binary on a loopback port and talks HTTP to it.
#![allow(dead_code)]

pub mod onnx;
pub mod registry;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn test_data(name: &str) -> Vec<u8> {
    let path = repo().join("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn guest_wasm(name: &str) -> PathBuf {
    let path = repo().join("guests/target/wasm32-wasip1/release").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-guests.sh", path.display());
    path
}

/// A component built by scripts/build-components.sh (`guests/target/components/NAME.wasm`).
pub fn component_wasm(name: &str) -> PathBuf {
    let path = repo().join("guests/target/components").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-components.sh", path.display());
    path
}

pub struct Gateway {
    pub base: String,
    child: Child,
    _stdin: Option<ChildStdin>,
    /// Where the gateway's log (its stderr) goes, for a test that reads it; `None`: inherited.
    log: Option<PathBuf>,
}

impl Gateway {
    /// Starts a gateway with the bundled models and the given app directories (plus `extra`
    /// arguments) and waits until it listens.
    pub fn start(app_dirs: &[&Path], extra: &[&str]) -> Gateway {
        Gateway::start_with_env(app_dirs, extra, &[])
    }

    /// [`Gateway::start`] with the gateway's log (its stderr) written to a file, for
    /// [`Gateway::log`].
    pub fn start_logged(app_dirs: &[&Path], extra: &[&str]) -> Gateway {
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("log-{}-{}", std::process::id(), unique()));
        Gateway::start_inner(app_dirs, extra, &[], Some(log))
    }

    /// What the gateway has logged so far (only for [`Gateway::start_logged`]).
    pub fn log(&self) -> String {
        let path = self.log.as_ref().expect("the gateway was started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// [`Gateway::start`] with variables set in the gateway's environment.
    pub fn start_with_env(app_dirs: &[&Path], extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        Gateway::start_inner(app_dirs, extra, env, None)
    }

    fn start_inner(app_dirs: &[&Path], extra: &[&str], env: &[(&str, &str)], log: Option<PathBuf>) -> Gateway {
        let mut args: Vec<String> = ["serve", "--models", "models"].map(String::from).to_vec();
        for dir in app_dirs {
            args.push("--app".into());
            args.push(dir.display().to_string());
        }
        // No demo page and a private data directory unless a test asks for them.
        args.extend(["--no-web-demo".into()]);
        if !extra.contains(&"--data-dir") {
            let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{}-{}", std::process::id(), unique()));
            args.extend(["--data-dir".into(), data.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Gateway::spawn_inner(&args, env, log)
    }

    /// Runs `edgenn ARGS --listen 127.0.0.1:0` and waits until it listens.
    pub fn spawn(args: &[String]) -> Gateway {
        Gateway::spawn_inner(args, &[], None)
    }

    fn spawn_inner(args: &[String], env: &[(&str, &str)], log: Option<PathBuf>) -> Gateway {
        let ort = repo().join(".edgenn/onnxruntime/libonnxruntime.so.1.31.1");
        assert!(ort.is_file(), "{} is missing: run scripts/install-onnxruntime.sh", ort.display());
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgenn"));
        command
            .current_dir(repo())
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof", "--ort-library"])
            .arg(&ort)
            .env("RUST_LOG", "warn,edgenn=info")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(log) = &log {
            command.stderr(std::fs::File::create(log).expect("creates the log file"));
        }
        let mut child = command.spawn().expect("edgenn starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reads the listening line");
        let base = line
            .trim()
            .strip_prefix("edgenn listening on ")
            .unwrap_or_else(|| panic!("gateway did not start ({args:?}); it printed {line:?}"))
            .to_string();
        Gateway { base, child, _stdin: Some(stdin), log }
    }

    /// Kills the gateway at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The gateway with the built-in apps, shared by the tests of one test binary. It exits
    /// when the test binary does (its stdin closes).
    pub fn shared() -> &'static Gateway {
        static GATEWAY: OnceLock<Gateway> = OnceLock::new();
        GATEWAY.get_or_init(|| Gateway::start(&[Path::new("guests/classify"), Path::new("guests/predict")], &[]))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory so far (the kernel's high-water mark), in MiB: an
    /// attack that made it take memory for a moment shows here.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib / 1024.0
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `edgenn ARGS` to completion: (success, stdout, stderr).
pub fn edgenn(args: &[&str]) -> (bool, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_edgenn")).current_dir(repo()).args(args).output().expect("edgenn runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Status and parsed JSON body.
pub fn json_of(response: Result<http::Response<ureq::Body>, ureq::Error>) -> (u16, serde_json::Value) {
    let mut response = response.expect("the request completes");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a text body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, json)
}

pub fn post(path: &str, content_type: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let gateway = Gateway::shared();
    json_of(agent().post(&gateway.url(path)).header("content-type", content_type).send(body))
}

pub fn get(path: &str) -> (u16, serde_json::Value) {
    json_of(agent().get(&Gateway::shared().url(path)).call())
}

/// A multipart/form-data body with one file field (after a text field, as a browser sends it).
pub fn multipart(field: &str, filename: &str, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let mut form = edgenn::commands::client::Multipart::new();
    form.part("note", None, None, b"hello").part(field, Some(filename), Some(content_type), data);
    (form.content_type(), form.finish())
}

/// A multipart/form-data body from `(field, filename, bytes)` parts.
pub fn multipart_parts(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut form = edgenn::commands::client::Multipart::new();
    for (field, filename, data) in parts {
        form.part(field, *filename, None, data);
    }
    (form.content_type(), form.finish())
}

/// Writes `head` on a new connection to `address`, uploads `body` from another thread while
/// reading the answer, as a browser does (the gateway may answer, 413 say, before it has read
/// the whole body), and returns the answer as text once it is complete.
pub fn send_while_reading(address: &str, head: &str, body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        for chunk in body.chunks(64 << 10) {
            if writer.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                break;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = upload.join();
    String::from_utf8_lossy(&response).into_owned()
}

/// Writes an app directory for a test program: its manifest (`extra` after name and module)
/// and `files` (bundled models) beside it.
pub fn app_dir(root: &Path, name: &str, program: &str, extra: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, bytes) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let wasm = guest_wasm(program);
    std::fs::write(dir.join("edgenn.toml"), format!("name = \"{name}\"\nwasm = \"{}\"\n{extra}\n", wasm.display()))
        .unwrap();
    dir
}

/// Requests `path` from `clients` threads for `duration` (a GET when `body` is empty, else a
/// POST of it as `content_type`), each answer a 200: the latencies in ms, sorted, and req/s.
/// For the benchmarks.
pub fn load(
    gateway: &Gateway,
    path: &str,
    content_type: &str,
    body: &[u8],
    clients: usize,
    duration: Duration,
) -> (Vec<f64>, f64) {
    load_with_headers(gateway, path, &[("content-type", content_type)], body, clients, duration)
}

/// [`load`] with any request headers.
pub fn load_with_headers(
    gateway: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    clients: usize,
    duration: Duration,
) -> (Vec<f64>, f64) {
    let url = gateway.url(path);
    let started = std::time::Instant::now();
    let per_client: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let agent = agent();
                    let mut latencies = Vec::new();
                    while started.elapsed() < duration {
                        let sent = std::time::Instant::now();
                        let mut response = if body.is_empty() {
                            agent.get(&url).call()
                        } else {
                            let request = headers.iter().fold(agent.post(&url), |r, (k, v)| r.header(*k, *v));
                            request.send(body)
                        }
                        .expect("request");
                        assert_eq!(response.status(), 200, "{url}");
                        let _ = response.body_mut().read_to_vec().expect("body");
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                    latencies
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<f64> = per_client.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    let throughput = all.len() as f64 / elapsed;
    (all, throughput)
}

/// Makes a CA and a certificate for `ip` signed by it (openssl): (CA file, certificate, key).
pub fn certificates(dir: &Path, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=edgenn test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        &format!("/CN={ip}"),
    ]);
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{ip}\n")).unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}
