//! Test program for the wasi-nn host: `POST ?model=NAME&shape=1,32&type=i32` with the raw
//! little-endian tensor as the body. Runs the model and answers its output 0, or the wasi-nn
//! error: 404 if the model could not be loaded, 422 if running it failed; both with the errno
//! as `wasi_nn_error`, so tests can check that errors are errnos, never traps.

use edgenn_guest::nn::{Model, NnError, Tensor};
use edgenn_guest::{Request, Response};
use serde_json::json;

fn main() {
    edgenn_guest::run(handle);
}

fn handle(req: Request) -> Response {
    let Some(model) = req.query("model") else {
        return Response::error(400, "query parameter model is required");
    };
    let shape: Result<Vec<usize>, _> = req
        .query("shape")
        .unwrap_or_default()
        .split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect();
    let Ok(shape) = shape else {
        return Response::error(400, "shape must be comma-separated sizes, e.g. 1,32");
    };
    let kind = req.query("type").unwrap_or_else(|| "f32".to_owned());
    let body = req.body();
    let width = match kind.as_str() {
        "f32" | "i32" => 4,
        "i64" => 8,
        "u8" => 1,
        _ => return Response::error(400, "type must be f32, i32, i64 or u8"),
    };
    if !body.len().is_multiple_of(width) {
        return Response::error(
            400,
            format!("body length {} is not a multiple of {width}", body.len()),
        );
    }

    let model = match Model::load(&model) {
        Ok(m) => m,
        Err(e) => return nn_error(404, &e),
    };
    let (f32s, i32s, i64s): (Vec<f32>, Vec<i32>, Vec<i64>);
    let tensor = match kind.as_str() {
        "f32" => {
            f32s = body
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            Tensor::f32(&shape, &f32s)
        }
        "i32" => {
            i32s = body
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            Tensor::i32(&shape, &i32s)
        }
        "i64" => {
            i64s = body
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            Tensor::i64(&shape, &i64s)
        }
        _ => Tensor::u8(&shape, body),
    };
    match model.run_f32(&[tensor]) {
        Ok(output) => Response::json(
            200,
            &json!({
                "model": model.name(),
                "output_len": output.len(),
                "output_head": &output[..output.len().min(8)],
            }),
        ),
        Err(e @ NnError::Input { .. }) => Response::error(400, e.to_string()),
        Err(e) => nn_error(422, &e),
    }
}

fn nn_error(status: u16, e: &NnError) -> Response {
    Response::json(
        status,
        &json!({ "error": e.to_string(), "wasi_nn_error": e.errno() }),
    )
}
