//! my-app's handler: the starting point for an edgenn guest app. Rename the package, then
//! replace `parse_input` and `answer` with your own pre- and post-processing.
//!
//! As it is, it runs any model with one input on numbers it is given, and answers the `k`
//! highest outputs as probabilities (softmax). With the manifest's default config it runs the
//! shared `wordlm` model (32 token ids in, next-token logits out), so it works against the
//! gateway's bundled models out of the box:
//!
//! ```text
//! GET  /v1/my-app                          what the app runs (no model call)
//! GET  /v1/my-app?input=12,7,40&k=3        run the model on these numbers
//! POST /v1/my-app  {"input": [12, 7, 40], "k": 3}
//! ```
//!
//! Inputs shorter than the model's input are left-padded with zeros (for wordlm: `<pad>`).
//! Answer: `{"model":"wordlm","outputs":6000,"top":[{"index":5,"probability":0.12}, ...]}`.
//!
//! How a guest works (guests/README.md, DESIGN.md): the gateway starts a fresh instance of the
//! app for every request and hands `handle` the request; `handle` answers it. The same handler
//! builds as a WAGI module (`src/main.rs`: body on stdin, method, query, headers and the
//! manifest's [config] from the environment) or as a `wasi:http/proxy` component
//! (`edgenn new --lang rust --component`: `src/lib.rs`); the SDK's `Request` and `Response` are
//! the same in both. Models are loaded by name through wasi-nn; the model bytes stay in the
//! gateway. A panic aborts the instance (the client gets a 500): answer errors instead.

use edgenn_guest::nn::{self, NnError, Tensor};
use edgenn_guest::{HttpError, ModelChoice, Request, Response};
use serde::{Deserialize, Serialize};

/// Refuse larger inputs early: the model could not take them anyway.
const MAX_VALUES: usize = 1 << 20;
const DEFAULT_K: usize = 5;
const MAX_K: usize = 100;

/// What the POST body may hold. `deny_unknown_fields` turns a typo into a clear 400.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Body {
    input: Option<Vec<f64>>,
    k: Option<usize>,
}

/// The app's settings, from the manifest's [config] (EDGENN_CONFIG_* variables).
struct Settings {
    /// The model to load, and the backend if one is asked for.
    choice: ModelChoice,
    input_type: InputType,
    input_shape: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum InputType {
    F32,
    I32,
    I64,
}

#[derive(Serialize)]
struct Answer<'a> {
    model: &'a str,
    outputs: usize,
    top: Vec<Scored>,
}

#[derive(Serialize)]
struct Scored {
    index: usize,
    probability: f32,
}

pub fn handle(req: Request) -> Result<Response, HttpError> {
    // Configuration errors are the deployer's, not the client's: 500.
    let settings = settings(&req)
        .map_err(|message| HttpError::new(500, format!("app configuration: {message}")))?;
    let body = match req.method() {
        "GET" => Body::default(),
        "POST" => parse_body(req.body()).map_err(HttpError::bad_request)?,
        _ => {
            return Err(HttpError::method_not_allowed(
                "GET, POST",
                "use GET or POST",
            ));
        }
    };
    let Some(input) = parse_input(&req, body.input).map_err(HttpError::bad_request)? else {
        // Nothing to run: describe the app instead (a cheap health check, no model call).
        return Ok(Response::json(
            200,
            &serde_json::json!({
                "app": "my-app",
                "model": settings.choice.reference(),
                "input_type": format!("{:?}", settings.input_type).to_lowercase(),
                "input_shape": settings.input_shape,
                "usage": "GET ?input=1,2,3&k=5 or POST {\"input\": [1, 2, 3], \"k\": 5}",
            }),
        ));
    };
    let k = match body
        .k
        .map(Ok)
        .or_else(|| req.query("k").map(|k| k.trim().parse()))
    {
        None => DEFAULT_K,
        Some(Ok(k)) if (1..=MAX_K).contains(&k) => k,
        Some(_) => {
            return Err(HttpError::bad_request(format!(
                "k must be an integer from 1 to {MAX_K}"
            )));
        }
    };
    // `?` turns the SDK's typed errors into statuses: a model that cannot be loaded (unknown,
    // or not declared in edgenn.toml) 404, a tensor that does not fit 400, a failed run 500.
    let outputs = infer(&settings, &input)?;
    Ok(answer(&settings, &outputs, k))
}

fn settings(req: &Request) -> Result<Settings, String> {
    // ?model= / [config] model (default wordlm), on ?backend= / [config] backend.
    let choice = req.model_choice("wordlm");
    let input_type = match req.config("input_type").unwrap_or("i32") {
        "f32" => InputType::F32,
        "i32" => InputType::I32,
        "i64" => InputType::I64,
        other => return Err(format!("input_type {other:?} is not f32, i32 or i64")),
    };
    let shape = req.config("input_shape").unwrap_or("1,32");
    let input_shape = shape
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| format!("input_shape {shape:?} must be positive integers like \"1,32\""))?;
    Ok(Settings {
        choice,
        input_type,
        input_shape,
    })
}

fn parse_body(bytes: &[u8]) -> Result<Body, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| format!("the body must be JSON like {{\"input\": [1, 2, 3], \"k\": 5}}: {e}"))
}

/// The numbers to run the model on: the JSON body's `input`, else `?input=1,2,3`, else none.
fn parse_input(req: &Request, from_body: Option<Vec<f64>>) -> Result<Option<Vec<f64>>, String> {
    if let Some(input) = from_body {
        return Ok(Some(input));
    }
    let Some(text) = req.query("input") else {
        return Ok(None);
    };
    text.split(',')
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("input value {v:?} is not a number"))
        })
        .collect::<Result<Vec<f64>, String>>()
        .map(Some)
}

/// Builds the input tensor (left-padded with zeros to the configured shape) and runs the model.
fn infer(settings: &Settings, input: &[f64]) -> Result<Vec<f32>, NnError> {
    let size: usize = settings.input_shape.iter().product();
    let too_long = |len: usize| NnError::Input {
        index: 0,
        message: format!(
            "{len} values for input shape {:?} (at most {size})",
            settings.input_shape
        ),
    };
    if input.len() > size.min(MAX_VALUES) {
        return Err(too_long(input.len()));
    }
    let mut values = vec![0f64; size - input.len()];
    values.extend_from_slice(input);

    // Loading is cheap: the gateway keeps compiled models cached across requests and apps.
    let model = settings.choice.load()?;
    let dims = &settings.input_shape;
    match settings.input_type {
        InputType::F32 => {
            let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            model.run_f32(&[Tensor::f32(dims, &data)])
        }
        InputType::I32 => {
            let data: Vec<i32> = values.iter().map(|&v| v as i32).collect();
            model.run_f32(&[Tensor::i32(dims, &data)])
        }
        InputType::I64 => {
            let data: Vec<i64> = values.iter().map(|&v| v as i64).collect();
            model.run_f32(&[Tensor::i64(dims, &data)])
        }
    }
}

/// Post-processing: the `k` highest outputs as softmax probabilities.
fn answer(settings: &Settings, outputs: &[f32], k: usize) -> Response {
    let probabilities = nn::softmax(outputs);
    let top = nn::top_k(&probabilities, k)
        .into_iter()
        .map(|(index, probability)| Scored { index, probability })
        .collect();
    Response::json(
        200,
        &Answer {
            model: &settings.choice.name,
            outputs: outputs.len(),
            top,
        },
    )
}

#[cfg(test)]
mod tests {
    //! Natively (`cargo test`) there is no wasi-nn: Model::load answers NnError::Unavailable,
    //! so a handler can be tested up to the model call.
    use super::*;
    use edgenn_guest::IntoResponse;

    /// The test request builder of the SDK, and the handler's answer as the gateway gets it.
    fn request(method: &str, query: &str, body: &str) -> Request {
        Request::builder()
            .method(method)
            .query(query)
            .header("content-type", "application/json")
            .config("model", "wordlm")
            .body(body)
            .build()
    }

    fn respond(req: Request) -> Response {
        handle(req).into_response()
    }

    #[test]
    fn get_without_input_describes_the_app() {
        let r = respond(request("GET", "", ""));
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["model"], "wordlm");
        assert_eq!(v["input_shape"], serde_json::json!([1, 32]));
    }

    #[test]
    fn statuses() {
        for (method, query, body, status) in [
            ("GET", "input=1,2,x", "", 400),
            ("GET", "input=1&k=0", "", 400),
            ("POST", "", "{\"inputs\": [1]}", 400),
            ("POST", "", "{\"input\": [1], \"k\": 101}", 400),
            ("DELETE", "", "", 405),
            // Too many values for [1, 32]: the SDK's NnError::Input, before any model call.
            (
                "GET",
                &format!("input={}", vec!["1"; 33].join(",")),
                "",
                400,
            ),
            // Valid requests reach the model: natively there is none to load.
            ("GET", "input=1,2,3", "", 404),
            ("POST", "", "{\"input\": [4, 5], \"k\": 3}", 404),
        ] {
            assert_eq!(
                respond(request(method, query, body)).status(),
                status,
                "{method} {query} {body}"
            );
        }
    }

    #[test]
    fn bad_configuration_is_a_server_error() {
        let req = Request::builder().config("input_shape", "1,x").build();
        assert_eq!(respond(req).status(), 500);
    }
}
