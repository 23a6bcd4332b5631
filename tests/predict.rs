//! Type-ahead word prediction through the `predict` guest, against the real gateway.

mod common;
use common::*;
use serde_json::{Value, json};

fn words(json: &Value) -> Vec<String> {
    json["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .map(|s| s["word"].as_str().unwrap().to_string())
        .collect()
}

fn assert_ranked(json: &Value) {
    let probabilities: Vec<f64> =
        json["suggestions"].as_array().unwrap().iter().map(|s| s["probability"].as_f64().unwrap()).collect();
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)), "{json}");
    assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "not sorted: {json}");
}

#[test]
fn predicts_the_next_word() {
    let (status, json) = get("/v1/predict?text=i%20am%20very%20glad%20to&k=5");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["completing"], Value::Null);
    let words = words(&json);
    assert_eq!(words.len(), 5, "{json}");
    assert_ranked(&json);
    // Jane Austen's characters are glad to see, hear, have, be... each a verb.
    assert!(
        words.iter().any(|w| ["see", "hear", "have", "be", "find", "know", "say"].contains(&w.as_str())),
        "{words:?}"
    );
    assert!(words.iter().all(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '\'')), "{words:?}");
}

#[test]
fn completes_a_partly_typed_word() {
    let (status, json) = get("/v1/predict?text=she%20was%20not%20acq&k=5");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["completing"], "acq");
    let words = words(&json);
    assert!(!words.is_empty(), "{json}");
    assert!(words.iter().all(|w| w.starts_with("acq")), "{words:?}");
    assert!(words.contains(&"acquainted".to_string()), "{words:?}");
    assert_ranked(&json);
}

#[test]
fn accepts_post_json() {
    let body = json!({"text": "it is a truth universally ", "k": 3}).to_string();
    let (status, json) = post("/v1/predict", "application/json", body.as_bytes());
    assert_eq!(status, 200, "{json}");
    assert_eq!(words(&json).len(), 3);
    assert_eq!(json["completing"], Value::Null);
}

#[test]
fn trailing_space_predicts_and_fragment_completes() {
    let (_, next) = get("/v1/predict?text=my%20dear%20&k=5");
    assert_eq!(next["completing"], Value::Null);
    let (_, partial) = get("/v1/predict?text=my%20dear%20mis&k=5");
    assert_eq!(partial["completing"], "mis");
    assert!(words(&partial).iter().all(|w| w.starts_with("mis")), "{partial}");
}
