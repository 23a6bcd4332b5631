//! `predict`: type-ahead with the wordlm next-word model.
//!
//! `GET /v1/predict?text=...&k=5[&backend=...][&model=...]`, or `POST` a JSON object
//! `{"text": "...", "k": 5, "backend": "...", "model": "..."}` (query parameters fill in what the
//! JSON leaves out).
//!
//! If the text ends in whitespace, or its last token is a whole vocabulary word, the answer is
//! the most likely next words (`"completing": null`). Otherwise the last token is a partly typed
//! word: it is left out of the context and the answer is the vocabulary words that start with
//! it, ranked by the model's probability renormalised over those words (`"completing": "acq"`).
//!
//! ```json
//! {"model":"wordlm","suggestions":[{"word":"see","probability":0.31}, ...],"completing":null}
//! ```
//!
//! The handler is a library so that one app ships in both ABIs: `src/main.rs` is the WAGI
//! command, `guests/predict-component` the same handler as a wasi:http component.

mod tokenize;
mod vocab;

use edgenn_guest::nn::{self, Tensor};
use edgenn_guest::{HttpError, Request, Response};
use serde::{Deserialize, Serialize};

use vocab::Vocab;

const DEFAULT_MODEL: &str = "wordlm";
const DEFAULT_K: i64 = 5;
const MAX_K: i64 = 50;
/// The model's context: the last 32 token ids, left-padded with `<pad>`.
const CONTEXT: usize = 32;
/// Longer texts are refused: only the end matters, and the gateway's body limit applies anyway.
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The POST body; every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Body {
    text: Option<String>,
    k: Option<i64>,
    backend: Option<String>,
    model: Option<String>,
}

#[derive(Serialize)]
struct Answer<'a> {
    model: &'a str,
    suggestions: Vec<Suggestion<'a>>,
    completing: Option<&'a str>,
}

#[derive(Serialize)]
struct Suggestion<'a> {
    word: &'a str,
    probability: f32,
}

/// What the model is asked: the context ids and, in completion mode, the typed fragment.
#[derive(Debug, PartialEq)]
struct Query {
    context: [i32; CONTEXT],
    completing: Option<String>,
}

/// Answers one type-ahead request.
pub fn handle(req: Request) -> Result<Response, HttpError> {
    let body = match req.method() {
        "GET" => Body::default(),
        "POST" => parse_body(req.body()).map_err(HttpError::bad_request)?,
        _ => {
            return Err(HttpError::method_not_allowed(
                "GET, POST",
                "use GET ?text=... or POST {\"text\": ...}",
            ));
        }
    };
    let text = body.text.or_else(|| req.query("text")).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(HttpError::bad_request("text is missing or empty"));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(HttpError::bad_request(format!(
            "text is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    let k = match body.k {
        Some(k) => k,
        None => req.query("k").map_or(Ok(DEFAULT_K), |k| {
            k.trim().parse::<i64>().map_err(|_| {
                HttpError::bad_request(format!("k must be an integer from 1 to {MAX_K}, not {k:?}"))
            })
        })?,
    };
    if !(1..=MAX_K).contains(&k) {
        return Err(HttpError::bad_request(format!(
            "k must be from 1 to {MAX_K}, not {k}"
        )));
    }
    // The JSON body may name the model and backend too, over the query and the config.
    let mut choice = req.model_choice(DEFAULT_MODEL);
    choice.name = body.model.unwrap_or(choice.name);
    choice.backend = body.backend.or(choice.backend);

    let vocab = Vocab::shipped();
    let query = build_query(&vocab, &text);
    let model = choice.load()?;
    let logits = model.run_f32(&[Tensor::i32(&[1, CONTEXT], &query.context)])?;
    if logits.len() != vocab.len() {
        return Err(HttpError::new(
            500,
            format!(
                "model {} gave {} logits but the vocabulary has {} tokens",
                choice.reference(),
                logits.len(),
                vocab.len()
            ),
        ));
    }
    let suggestions = rank(&vocab, &logits, query.completing.as_deref(), k as usize);
    Ok(Response::json(
        200,
        &Answer {
            model: &choice.name,
            suggestions: suggestions
                .into_iter()
                .map(|(word, probability)| Suggestion { word, probability })
                .collect(),
            completing: query.completing.as_deref(),
        },
    ))
}

fn parse_body(bytes: &[u8]) -> Result<Body, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default()); // a POST with only query parameters
    }
    serde_json::from_slice(bytes).map_err(|e| {
        format!("the body must be a JSON object like {{\"text\": \"...\", \"k\": 5}}: {e}")
    })
}

/// Tokenises `text` and decides between next-word and completion mode (DESIGN.md).
fn build_query(vocab: &Vocab<'_>, text: &str) -> Query {
    let mut tokens = tokenize::tokenize(text);
    let completing = match tokens.last() {
        Some(last)
            if !tokenize::ends_in_whitespace(text)
                && !tokenize::is_punct(last)
                && vocab.id(last).is_none() =>
        {
            tokens.pop()
        }
        _ => None,
    };
    let ids: Vec<i32> = tokens
        .iter()
        .map(|t| vocab.id(t).unwrap_or(vocab::UNK) as i32)
        .collect();
    let mut context = [vocab::PAD as i32; CONTEXT];
    let tail = &ids[ids.len().saturating_sub(CONTEXT)..];
    context[CONTEXT - tail.len()..].copy_from_slice(tail);
    Query {
        context,
        completing,
    }
}

/// The `k` best words: next-word mode ranks by the model's probability (softmax over the whole
/// vocabulary); completion mode renormalises over the words that start with the fragment.
/// `<pad>`, `<unk>` and punctuation are never suggested.
fn rank<'v>(
    vocab: &Vocab<'v>,
    logits: &[f32],
    completing: Option<&str>,
    k: usize,
) -> Vec<(&'v str, f32)> {
    let candidates: Vec<usize> = (0..vocab.len())
        .filter(|&id| vocab.is_word(id))
        .filter(|&id| completing.is_none_or(|prefix| vocab.token(id).starts_with(prefix)))
        .collect();
    let scores: Vec<f32> = match completing {
        None => {
            let probabilities = nn::softmax(logits);
            candidates.iter().map(|&id| probabilities[id]).collect()
        }
        Some(_) => {
            let chosen: Vec<f32> = candidates.iter().map(|&id| logits[id]).collect();
            nn::softmax(&chosen)
        }
    };
    nn::top_k(&scores, k)
        .into_iter()
        .map(|(i, p)| (vocab.token(candidates[i]), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenn_guest::IntoResponse;

    const TEST_VOCAB: &str = "<pad>\n<unk>\n.\n,\nthe\nto\nsee\nacquainted\nacquaintance\nhear\n!\nmy\ndear\nmiss\nmister\n";

    fn vocab() -> Vocab<'static> {
        Vocab::new(TEST_VOCAB)
    }

    #[test]
    fn next_word_context_is_left_padded() {
        let q = build_query(&vocab(), "My dear, to SEE ");
        assert_eq!(q.completing, None);
        let mut expect = [0; CONTEXT];
        expect[CONTEXT - 5..].copy_from_slice(&[11, 12, 3, 5, 6]);
        assert_eq!(q.context, expect);
        // Last token a whole word, no trailing space: still next-word mode.
        assert_eq!(build_query(&vocab(), "to see").completing, None);
        // Punctuation at the end: next word.
        assert_eq!(build_query(&vocab(), "xyz.").completing, None);
        // Nothing but separators: next word on an all-padding context.
        let q = build_query(&vocab(), "@@");
        assert_eq!((q.completing, q.context), (None, [0; CONTEXT]));
    }

    #[test]
    fn completion_drops_the_fragment_and_maps_unknowns() {
        let q = build_query(&vocab(), "zebra to acq");
        assert_eq!(q.completing.as_deref(), Some("acq"));
        let mut expect = [0; CONTEXT];
        expect[CONTEXT - 2..].copy_from_slice(&[1, 5]);
        assert_eq!(q.context, expect);
        // The fragment is lower-cased like every token.
        assert_eq!(
            build_query(&vocab(), "Mis").completing.as_deref(),
            Some("mis")
        );
    }

    #[test]
    fn long_context_keeps_the_last_32_tokens() {
        let text = format!("{} dear", "the ".repeat(40));
        let q = build_query(&vocab(), &text);
        assert_eq!(q.context[CONTEXT - 1], 12);
        assert!(q.context[..CONTEXT - 1].iter().all(|&id| id == 4));
    }

    #[test]
    fn ranking_excludes_specials_and_punctuation() {
        let v = vocab();
        let mut logits = vec![0.0f32; v.len()];
        logits[0] = 10.0; // <pad>
        logits[1] = 9.0; // <unk>
        logits[2] = 8.0; // .
        logits[6] = 3.0; // see
        logits[9] = 2.0; // hear
        let next = rank(&v, &logits, None, 3);
        assert_eq!(
            next.iter().map(|s| s.0).collect::<Vec<_>>(),
            ["see", "hear", "the"]
        );
        let all = nn::softmax(&logits);
        assert!(
            (next[0].1 - all[6]).abs() < 1e-7,
            "next-word mode is not renormalised"
        );

        let completing = rank(&v, &logits, Some("mis"), 5);
        assert_eq!(completing.len(), 2);
        assert!((completing.iter().map(|s| s.1).sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(rank(&v, &logits, Some("zzz"), 5).is_empty());
    }

    fn request(method: &str, query: &str, body: &str) -> Request {
        Request::from_cgi_vars(
            [
                ("REQUEST_METHOD", method),
                ("QUERY_STRING", query),
                ("CONTENT_TYPE", "application/json"),
                ("EDGENN_CONFIG_MODEL", "wordlm"),
            ],
            body.as_bytes().to_vec(),
        )
    }

    #[test]
    fn client_errors() {
        for (method, query, body, status) in [
            ("GET", "k=3", "", 400),
            ("GET", "text=", "", 400),
            ("GET", "text=%20%20", "", 400),
            ("GET", "text=hello&k=0", "", 400),
            ("GET", "text=hello&k=51", "", 400),
            ("GET", "text=hello&k=x", "", 400),
            ("POST", "", "{\"text\": ", 400),
            ("POST", "", "{\"text\": \"hi\", \"k\": 99}", 400),
            ("POST", "", "{\"text\": \"hi\", \"k\": \"5\"}", 400),
            ("POST", "", "{\"txt\": \"hi\"}", 400),
            ("POST", "", "[1]", 400),
            ("PUT", "text=hi", "", 405),
            // Valid requests reach the model, which native builds do not have.
            ("GET", "text=hello&k=50&backend=nope", "", 404),
            ("POST", "backend=tract", "{\"text\": \"hi\", \"k\": 1}", 404),
            ("POST", "text=hi", "", 404),
        ] {
            let r = handle(request(method, query, body)).into_response();
            assert_eq!(r.status(), status, "{method} {query} {body}");
            let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            assert!(v["error"].as_str().unwrap().len() > 5);
        }
    }
}
