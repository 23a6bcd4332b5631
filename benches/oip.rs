//! (j) The Open Inference Protocol: `POST /v2/models/efficientnet-lite0/infer` with one FP32
//! image tensor, binary (the binary tensor data extension, as `tritonclient` sends it) and
//! JSON, at 1 and 8 clients over HTTP on loopback, against ONNX Runtime called directly on the
//! same tensor in this process (same library, same session options as the gateway's), taking
//! turns (one request and one direct run, or ten and ten): the protocol's share of the time at
//! 1 client is `1 - direct p50 / v2 p50` (goal <= 5 %), and, less moved by the machine's drift,
//! from the median of paired differences (each turn's mean request time minus the mean of the
//! direct runs right after it): `difference / (direct p50 + difference)`. One client is measured twice: a minimal one that
//! writes each request in one call (what the gateway costs), and ureq (what a general client
//! adds). The gateway's `server-timing` says where the rest goes; the same request to a model
//! that does not exist gives the protocol's cost without the inference, and the same request
//! to a server that only reads it and answers gives the floor: what the exchange over loopback
//! costs on this machine before any server does anything.
//!
//! Run: `cargo bench --bench oip` (after `scripts/setup.sh`). `EDGENN_BENCH_SECONDS` sets the
//! duration of each HTTP run (default 10).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Gateway, repo};
use edgenn::nn::backend::LoadedGraph;
use edgenn::nn::backend::ort::{OrtBackend, OrtOptions};
use std::time::{Duration, Instant};
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::Id;
use wasmtime_wasi_nn::wit::TensorType;

const SHAPE: [u32; 4] = [1, 3, 224, 224];

/// How HTTP requests and direct runs take turns at 1 client: one each, or blocks of ten.
const TURNS: [(&str, usize); 2] = [("1 + 1", 1), ("10 + 10", 10)];

/// A fixed pseudo-random image tensor in [-1, 1) (xorshift), the same for every run.
fn image() -> Vec<f32> {
    let mut state = 0x9e37_79b9_u32;
    (0..SHAPE.iter().product::<u32>())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// ONNX Runtime on the same tensor, no protocol, no HTTP: `runs` times set-input + compute +
/// get-output, in ms.
fn direct(graph: &dyn LoadedGraph, image: &[f32], runs: usize) -> Vec<f64> {
    let tensor = Tensor::new(SHAPE.to_vec(), TensorType::Fp32, bytemuck::cast_slice(image).to_vec());
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            let mut execution = graph.execution();
            execution.set_input(Id::Index(0), &tensor).expect("input");
            execution.compute(None).expect("compute");
            let _ = execution.get_output(Id::Index(0)).expect("output");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// An HTTP/1.1 client on one kept-alive connection that writes each request with one
/// `write_all` and reads the answer by its `content-length`: what the gateway costs, without
/// a general client's own (ureq copies the body through its buffers in pieces).
struct RawClient {
    stream: std::net::TcpStream,
    host: String,
}

impl RawClient {
    fn connect(gateway: &Gateway) -> Self {
        Self::connect_to(gateway.base.trim_start_matches("http://"))
    }

    fn connect_to(address: &str) -> Self {
        let address = address.to_string();
        let stream = std::net::TcpStream::connect(&address).expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        RawClient { stream, host: address }
    }

    /// POSTs `body`; returns the status and the `server-timing` header (empty if none).
    fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        use std::io::Write;
        let mut request = format!("POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n", self.host, body.len());
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).expect("sends");
        let mut answer = Vec::new();
        let (head, total) =
            read_message(&mut self.stream, &mut answer, &mut [0u8; 16 << 10]).expect("the gateway answers");
        assert!(!header(&head, "content-length").is_empty(), "a content-length: {head}");
        assert_eq!(answer.len(), total, "one answer at a time");
        let status = head[9..12].parse().expect("a status");
        (status, header(&head, "server-timing"))
    }
}

/// Reads one HTTP message from `stream` into `message`, `chunk` at a time: its head, then as
/// many bytes as its `content-length` says. Gives the head and the message's length, or None if
/// the connection ended first.
fn read_message(stream: &mut impl std::io::Read, message: &mut Vec<u8>, chunk: &mut [u8]) -> Option<(String, usize)> {
    message.clear();
    let mut expected: Option<(String, usize)> = None;
    loop {
        if expected.is_none()
            && let Some(end) = message.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&message[..end]).into_owned();
            let length = header(&head, "content-length").parse::<usize>().unwrap_or(0);
            expected = Some((head, end + 4 + length));
        }
        if let Some((_, total)) = &expected
            && message.len() >= *total
        {
            return expected;
        }
        match stream.read(chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => message.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The floor: a server that does nothing but read each request whole (by its
/// `content-length`) and write a 4 KB answer, on a plain std thread, on loopback. What it costs
/// the client is what this machine charges for the exchange itself (the copies through the
/// kernel, and waking the sleeping thread on each side), which no gateway can go under.
fn floor_server() -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let address = listener.local_addr().expect("an address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_nodelay(true).expect("nodelay");
            let answer = [b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n".as_slice(), &[0u8; 4096]].concat();
            let (mut request, mut chunk) = (Vec::new(), vec![0u8; 64 << 10]);
            while read_message(&mut stream, &mut request, &mut chunk).is_some() {
                if stream.write_all(&answer).is_err() {
                    break;
                }
            }
        }
    });
    address
}

/// A header's value in a response head (empty if absent).
fn header(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// One client, side by side: for `duration`, `block` requests over HTTP back to back (`send`
/// returns each one's `server-timing`), then as many runs of ONNX Runtime directly on the same
/// tensor, in turn, so both see the same machine (it is shared and its speed drifts by the
/// second). With `block` 1 every request follows a direct run, during which the gateway sat
/// idle for the length of an inference; in blocks, most requests follow the previous answer,
/// as a client's requests do. Returns the HTTP latencies, the direct ones, and the medians of
/// each answer's `server-timing` stages (the gateway's own account: read, queue, decode,
/// infer, encode), in ms.
/// What [`side_by_side`] measured, each sorted: the requests' times, the direct runs', the
/// medians of the gateway's stages, and each turn's mean request minus its mean direct run.
struct Turns {
    http: Vec<f64>,
    direct: Vec<f64>,
    stages: Vec<(String, f64)>,
    paired: Vec<f64>,
}

fn side_by_side(
    graph: &dyn LoadedGraph,
    image: &[f32],
    send: &mut dyn FnMut() -> String,
    block: usize,
    duration: Duration,
) -> Turns {
    let (mut http, mut direct_times, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    let mut stages: Vec<(String, Vec<f64>)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        for _ in 0..block {
            let sent = Instant::now();
            let timing = send();
            http.push(sent.elapsed().as_secs_f64() * 1e3);
            for part in timing.split(", ") {
                let Some((name, Ok(ms))) = part.split_once(";dur=").map(|(n, v)| (n, v.parse::<f64>())) else {
                    continue;
                };
                match stages.iter_mut().find(|(seen, _)| seen == name) {
                    Some((_, values)) => values.push(ms),
                    None => stages.push((name.to_string(), vec![ms])),
                }
            }
        }
        let runs = direct(graph, image, block);
        let mean = |times: &[f64]| times.iter().sum::<f64>() / times.len() as f64;
        paired.push(mean(&http[http.len() - block..]) - mean(&runs));
        direct_times.extend(runs);
    }
    let stages = stages.into_iter().map(|(name, values)| (name, percentile(&sorted(values), 0.5))).collect();
    Turns { http: sorted(http), direct: sorted(direct_times), stages, paired: sorted(paired) }
}

/// A ureq request (the general client the tests use); returns its `server-timing`.
fn ureq_post(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let request = headers.iter().fold(agent.post(url), |r, (k, v)| r.header(*k, *v));
    let mut response = request.send(body).expect("an answer");
    assert_eq!(response.status(), 200);
    let _ = response.body_mut().read_to_vec().expect("a body");
    response.headers()["server-timing"].to_str().expect("text").to_string()
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn main() {
    let seconds: u64 = std::env::var("EDGENN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let image = image();

    let options = OrtOptions::default();
    let ort =
        OrtBackend::new(&repo().join(".edgenn/onnxruntime/libonnxruntime.so.1.31.1"), options).expect("ONNX Runtime");
    let onnx = std::fs::read(repo().join("models/efficientnet-lite0/model.onnx")).expect("the model");
    let graph = ort.load(&onnx).expect("loads");

    let gateway = Gateway::start(&[], &["--no-warm-up"]);
    let header = serde_json::json!({
        "inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32",
                    "parameters": {"binary_data_size": image.len() * 4}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut binary = header.clone().into_bytes();
    binary.extend_from_slice(bytemuck::cast_slice(&image));
    let header_length = header.len().to_string();
    let binary_headers =
        [("content-type", "application/octet-stream"), ("inference-header-content-length", header_length.as_str())];
    let json = serde_json::json!({
        "inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32", "data": image}],
    })
    .to_string()
    .into_bytes();
    let json_headers = [("content-type", "application/json")];
    let path = "/v2/models/efficientnet-lite0/infer";
    // Loads the model in the gateway before anything is timed.
    common::load_with_headers(&gateway, path, &binary_headers, &binary, 1, Duration::from_millis(500));

    println!(
        "edgenn Open Inference Protocol benchmark ({} cores; ort {} sessions x {} intra-op threads)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        options.sessions_per_model,
        options.intra_threads
    );
    let _ = direct(&graph, &image, 20);
    let mut accounts = Vec::new();
    let agent = common::agent();
    let url = gateway.url(path);
    println!(
        "| input | client | turns | clients | requests | p50 ms | p99 ms | req/s | direct p50 ms | protocol share at p50 | paired difference p50 ms | paired share |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, headers, body) in [("binary", &binary_headers[..], &binary), ("JSON", &json_headers[..], &json)] {
        // Connected when its turn comes: the gateway closes a connection idle for 10 s.
        let mut raw = None;
        let mut by_raw = || {
            let client = raw.get_or_insert_with(|| RawClient::connect(&gateway));
            let (status, timing) = client.post(path, headers, body);
            assert_eq!(status, 200);
            timing
        };
        let mut by_ureq = || ureq_post(&agent, &url, headers, body);
        let clients: [(&str, &mut dyn FnMut() -> String); 2] = [("raw", &mut by_raw), ("ureq", &mut by_ureq)];
        for (client, send) in clients {
            for (turns, block) in TURNS {
                let Turns { http: latencies, direct: direct_times, stages, paired } =
                    side_by_side(&graph, &image, &mut *send, block, duration);
                // What one client gets back to back: the requests are interleaved with direct runs.
                let requests_per_second = latencies.len() as f64 / (latencies.iter().sum::<f64>() / 1e3);
                let (p50, direct_p50) = (percentile(&latencies, 0.5), percentile(&direct_times, 0.5));
                let difference = percentile(&paired, 0.5);
                println!(
                    "| {name} | {client} | {turns} | 1 | {} | {p50:.2} | {:.2} | {requests_per_second:.1} | {direct_p50:.2} | {:.1} % | {difference:.3} | {:.1} % |",
                    latencies.len(),
                    percentile(&latencies, 0.99),
                    100.0 * (1.0 - direct_p50 / p50),
                    100.0 * difference / (direct_p50 + difference)
                );
                accounts.push((format!("{name}, {client}, {turns}"), stages));
            }
        }
        let (latencies, throughput) = common::load_with_headers(&gateway, path, headers, body, 8, duration);
        println!(
            "| {name} | ureq | - | 8 | {} | {:.2} | {:.2} | {throughput:.1} | - | - | - | - |",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
    // The floor: the same request and turns, answered by a server that does nothing.
    let floor = floor_server();
    let mut floor_client = RawClient::connect_to(&floor);
    let mut by_floor = || {
        assert_eq!(floor_client.post(path, &binary_headers, &binary).0, 200);
        String::new()
    };
    let Turns { http: floor_times, direct: direct_times, .. } =
        side_by_side(&graph, &image, &mut by_floor, 1, duration / 2);
    let (floor_p50, direct_p50) = (percentile(&floor_times, 0.5), percentile(&direct_times, 0.5));
    println!();
    println!(
        "The floor (the binary request to a std server that only reads it and answers 4 KB, raw client, 1 + 1): p50 {floor_p50:.3} ms, p99 {:.3} ms; as a share of direct + floor: {:.1} %",
        percentile(&floor_times, 0.99),
        100.0 * floor_p50 / (direct_p50 + floor_p50)
    );
    // Decoding alone, in this process: what a JSON image costs before any HTTP, flat (as
    // tritonclient sends it) and nested [1][3][224][224].
    let nested: Vec<Vec<Vec<&[f32]>>> =
        vec![image.chunks(224 * 224).map(|plane| plane.chunks(224).collect()).collect()];
    let nested = serde_json::json!({
        "inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32", "data": nested}],
    })
    .to_string()
    .into_bytes();
    for (form, body) in [("flat", &json), ("nested", &nested)] {
        let times: Vec<f64> = (0..40)
            .map(|_| {
                let started = Instant::now();
                let decoded = edgenn::oip::decode(body, None, edgenn::http::HttpLimits::default().max_infer_body_bytes)
                    .expect("decodes");
                assert_eq!(decoded.inputs[0].tensor.data.len(), image.len() * 4);
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        println!(
            "The JSON image decoded in process ({form}, oip::decode): p50 {:.3} ms",
            percentile(&sorted(times), 0.5)
        );
    }
    // The protocol without the inference: the same binary request to a model that does not
    // exist is read and decoded like the others, then answered 404; back to back, and each
    // after a direct run (the gateway idle for an inference's length, as with `turns` 1).
    let mut raw = RawClient::connect(&gateway);
    for (turns, after_direct) in [("back to back", false), ("each after a direct run", true)] {
        let mut alone = Vec::new();
        let started = Instant::now();
        while started.elapsed() < duration / 4 {
            if after_direct {
                let _ = direct(&graph, &image, 1);
            }
            let sent = Instant::now();
            assert_eq!(raw.post("/v2/models/no-such-model/infer", &binary_headers, &binary).0, 404);
            alone.push(sent.elapsed().as_secs_f64() * 1e3);
        }
        let alone = sorted(alone);
        println!(
            "The binary request to a model that does not exist (read, decoded, answered 404), raw client, {turns}: p50 {:.3} ms, p99 {:.3} ms",
            percentile(&alone, 0.5),
            percentile(&alone, 0.99)
        );
    }
    println!();
    println!("Where a request's time goes at 1 client: medians in ms of the gateway's `server-timing` stages");
    for (name, stages) in accounts {
        let text: Vec<String> = stages.iter().map(|(stage, ms)| format!("{stage} {ms:.3}")).collect();
        println!("- {name}: {}", text.join(", "));
    }
}
