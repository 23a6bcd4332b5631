//! Bad input gets a clear 4xx JSON error, never a 5xx, and the next request is served.

mod common;
use common::*;

fn chelsea_ok() {
    let (status, json) = post("/v1/classify?k=1", "image/jpeg", &test_data("chelsea.jpg"));
    assert_eq!(status, 200, "the gateway stopped serving: {json}");
}

fn assert_client_error(status: u16, json: &serde_json::Value, expected: u16) {
    assert_eq!(status, expected, "{json}");
    let message = json["error"].as_str().unwrap_or_else(|| panic!("no error message: {json}"));
    assert!(message.len() > 5, "{json}");
}

#[test]
fn bad_images_are_refused() {
    let truncated = test_data("truncated.jpg");
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("empty body", "image/jpeg", Vec::new(), 400),
        ("not an image", "text/plain", test_data("not-an-image.txt"), 415),
        ("truncated jpeg", "image/jpeg", truncated, 400),
        ("decompression bomb", "image/png", test_data("bomb.png"), 413),
    ];
    for (what, content_type, body, expected) in cases {
        let (status, json) = post("/v1/classify", content_type, &body);
        assert!((400..500).contains(&status), "{what}: {status} {json}");
        assert_client_error(status, &json, expected);
        chelsea_ok();
    }
}

#[test]
fn k_out_of_range_and_unknown_model_or_backend() {
    let jpeg = test_data("chelsea.jpg");
    for (query, expected) in [("k=0", 400), ("k=101", 400), ("k=abc", 400), ("backend=cuda", 404), ("model=nope", 404)]
    {
        let (status, json) = post(&format!("/v1/classify?{query}"), "image/jpeg", &jpeg);
        assert_client_error(status, &json, expected);
    }
    for (query, expected) in
        [("text=hello&k=0", 400), ("text=hello&k=51", 400), ("k=3", 400), ("text=", 400), ("text=hi&backend=nope", 404)]
    {
        let (status, json) = get(&format!("/v1/predict?{query}"));
        assert_client_error(status, &json, expected);
    }
    chelsea_ok();
}

/// Sends a request over a raw socket, uploading the body while the answer is read.
fn raw_post(path: &str, headers: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let address = Gateway::shared().base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: image/jpeg\r\nconnection: close\r\n{headers}\r\n"
    );
    let text = send_while_reading(&address, &head, body);
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

#[test]
fn body_over_the_limit_is_413() {
    let limit: usize = 20 << 20;
    // Declared too large: refused before the body is read.
    let (status, json) = raw_post("/v1/classify", &format!("content-length: {}\r\n", limit + 1), vec![0; limit + 1]);
    assert_client_error(status, &json, 413);
    chelsea_ok();
    // Streamed without a declared length: refused once the limit is passed.
    let mut chunked = Vec::new();
    for _ in 0..21 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
        chunked.extend_from_slice(&vec![0u8; 1 << 20]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, json) = raw_post("/v1/classify", "transfer-encoding: chunked\r\n", chunked);
    assert_client_error(status, &json, 413);
    chelsea_ok();
}

#[test]
fn malformed_json_and_unknown_routes() {
    let (status, json) = post("/v1/predict", "application/json", b"{\"text\": ");
    assert_client_error(status, &json, 400);
    let (status, json) = get("/v1/nothing-here");
    assert_client_error(status, &json, 404);
    let (status, json) = get("/apps/nope");
    assert_client_error(status, &json, 404);
    let (status, json) = get("/v1/classify");
    assert_client_error(status, &json, 405);
    chelsea_ok();
}
