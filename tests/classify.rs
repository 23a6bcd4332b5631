//! Image classification through the `classify` guest, against the real gateway.

mod common;
use common::*;
use serde_json::Value;

fn top(json: &Value) -> (String, f64) {
    let first = &json["predictions"][0];
    (first["label"].as_str().unwrap().to_string(), first["probability"].as_f64().unwrap())
}

fn assert_well_formed(json: &Value, k: usize) {
    let predictions = json["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), k, "{json}");
    let probabilities: Vec<f64> = predictions.iter().map(|p| p["probability"].as_f64().unwrap()).collect();
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)), "{probabilities:?}");
    assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probabilities:?}");
    assert!(probabilities.iter().sum::<f64>() <= 1.0 + 1e-4);
    for p in predictions {
        let index = p["index"].as_u64().unwrap();
        assert!(index < 1000);
        assert!(!p["label"].as_str().unwrap().is_empty());
    }
    assert!(json["timing_ms"]["total"].as_f64().unwrap() >= json["timing_ms"]["inference"].as_f64().unwrap());
}

#[test]
fn classifies_a_cat_jpeg_with_the_default_backend() {
    let (status, json) = post("/v1/classify?k=5", "image/jpeg", &test_data("chelsea.jpg"));
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["model"], "efficientnet-lite0");
    assert_eq!(json["backend"], "ort");
    assert_well_formed(&json, 5);
    let (label, probability) = top(&json);
    assert!(["tabby", "tiger cat", "Egyptian cat"].contains(&label.as_str()), "chelsea classified as {label}");
    assert!(probability > 0.2, "{json}");
}

#[test]
fn png_and_webp_of_the_same_photo_agree_with_jpeg() {
    let (_, jpeg) = post("/v1/classify", "image/jpeg", &test_data("chelsea.jpg"));
    for (file, content_type) in [("chelsea.png", "image/png"), ("chelsea.webp", "image/webp")] {
        let (status, json) = post("/v1/classify", content_type, &test_data(file));
        assert_eq!(status, 200, "{file}: {json}");
        assert_well_formed(&json, 5);
        // JPEG artefacts may swap near-tied classes (tiger cat vs Egyptian cat): compare the
        // top-3 as sets.
        let top3 = |j: &Value| {
            let mut v: Vec<u64> = (0..3).map(|i| j["predictions"][i]["index"].as_u64().unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(top3(&json), top3(&jpeg), "{file}: {json} vs {jpeg}");
    }
}

#[test]
fn classifies_coffee() {
    let (status, json) = post("/v1/classify?k=3", "image/jpeg", &test_data("coffee.jpg"));
    assert_eq!(status, 200, "{json}");
    assert_well_formed(&json, 3);
    let (label, _) = top(&json);
    assert!(["espresso", "cup", "coffee mug", "eggnog"].contains(&label.as_str()), "coffee classified as {label}");
}

#[test]
fn accepts_multipart_uploads() {
    let (content_type, body) = multipart("image", "chelsea.jpg", "image/jpeg", &test_data("chelsea.jpg"));
    let (status, json) = post("/v1/classify?k=2", &content_type, &body);
    assert_eq!(status, 200, "{json}");
    assert_well_formed(&json, 2);
    let (label, _) = top(&json);
    assert!(label.contains("cat") || label == "tabby", "{label}");
}

#[test]
fn k_bounds_are_inclusive() {
    for k in [1, 100] {
        let (status, json) = post(&format!("/v1/classify?k={k}"), "image/jpeg", &test_data("chelsea.jpg"));
        assert_eq!(status, 200, "{json}");
        assert_well_formed(&json, k);
    }
}

#[test]
fn ort_and_tract_agree() {
    for photo in ["chelsea.jpg", "coffee.jpg"] {
        let data = test_data(photo);
        let (s1, ort) = post("/v1/classify?k=10&backend=ort", "image/jpeg", &data);
        let (s2, tract) = post("/v1/classify?k=10&backend=tract", "image/jpeg", &data);
        assert_eq!((s1, s2), (200, 200), "{ort} {tract}");
        assert_eq!(ort["backend"], "ort");
        assert_eq!(tract["backend"], "tract");
        assert_eq!(ort["predictions"][0]["index"], tract["predictions"][0]["index"], "{photo}");
        let by_index = |json: &Value, index: &Value| {
            json["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| &p["index"] == index)
                .map(|p| p["probability"].as_f64().unwrap())
        };
        for p in ort["predictions"].as_array().unwrap().iter().take(5) {
            let a = p["probability"].as_f64().unwrap();
            let b = by_index(&tract, &p["index"])
                .unwrap_or_else(|| panic!("{photo}: class {} missing on tract", p["index"]));
            assert!((a - b).abs() < 1e-3, "{photo}: class {} ort {a} tract {b}", p["index"]);
        }
    }
}

#[test]
fn is_served_under_apps_too() {
    let (status, json) = post("/apps/classify?k=1", "image/jpeg", &test_data("chelsea.jpg"));
    assert_eq!(status, 200, "{json}");
    assert_well_formed(&json, 1);
}
