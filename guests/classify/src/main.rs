//! `classify`: image classification with efficientnet-lite0 (ImageNet-1k).
//!
//! `POST /v1/classify?k=5[&backend=ort|tract][&model=...]` with a JPEG, PNG or WebP image as
//! the body, or as the field `image` of a `multipart/form-data` form. The image is decoded and
//! pre-processed here, in the guest; only the model runs on the host (wasi-nn).
//!
//! ```json
//! {"model":"efficientnet-lite0","backend":"ort",
//!  "predictions":[{"index":282,"label":"tiger cat","probability":0.38}, ...],
//!  "timing_ms":{"total":41.2,"inference":30.9}}
//! ```

mod decode;
mod preprocess;

use std::time::Instant;

use edgenn_guest::nn::{self, Tensor};
use edgenn_guest::{HttpError, Request, Response};
use image::DynamicImage;
use serde::Serialize;

use preprocess::{CROP, Pixels};

/// Line i is the name of class i.
static LABELS: &str = include_str!("../../../models/efficientnet-lite0/labels.txt");
const DEFAULT_MODEL: &str = "efficientnet-lite0";
const DEFAULT_K: usize = 5;
const MAX_K: usize = 100;

fn main() {
    edgenn_guest::run(handle);
}

#[derive(Serialize)]
struct Answer<'a> {
    model: &'a str,
    backend: Option<&'a str>,
    predictions: Vec<Prediction<'a>>,
    timing_ms: Timing,
}

#[derive(Serialize)]
struct Prediction<'a> {
    index: usize,
    label: &'a str,
    probability: f32,
}

#[derive(Serialize)]
struct Timing {
    total: f64,
    inference: f64,
}

fn handle(req: Request) -> Result<Response, HttpError> {
    let started = Instant::now();
    if req.method() != "POST" {
        return Err(HttpError::method_not_allowed(
            "POST",
            "use POST with an image (JPEG, PNG or WebP) as the body or as form field \"image\"",
        ));
    }
    let k = parse_k(req.query("k").as_deref()).map_err(HttpError::bad_request)?;
    let choice = req.model_choice(DEFAULT_MODEL);
    let image = decode::decode(image_bytes(&req)?)?;
    let input = to_input(image);

    let model = choice.load()?;
    let inference_started = Instant::now();
    let logits = model.run_f32(&[Tensor::f32(&[1, 3, CROP, CROP], &input)])?;
    let inference = inference_started.elapsed();

    let labels: Vec<&str> = LABELS.lines().collect();
    let probabilities = nn::softmax(&logits);
    let predictions = nn::top_k(&probabilities, k)
        .into_iter()
        .map(|(index, probability)| Prediction {
            index,
            label: labels.get(index).copied().unwrap_or("?"),
            probability,
        })
        .collect();
    Ok(Response::json(
        200,
        &Answer {
            model: &choice.name,
            backend: choice.backend.as_deref(),
            predictions,
            timing_ms: Timing {
                total: millis(started.elapsed()),
                inference: millis(inference),
            },
        },
    ))
}

fn parse_k(k: Option<&str>) -> Result<usize, String> {
    let Some(k) = k else { return Ok(DEFAULT_K) };
    match k.trim().parse::<usize>() {
        Ok(k) if (1..=MAX_K).contains(&k) => Ok(k),
        _ => Err(format!("k must be an integer from 1 to {MAX_K}, not {k:?}")),
    }
}

/// The image: the body, or the `image` field of a multipart form.
fn image_bytes(req: &Request) -> Result<&[u8], HttpError> {
    if req.media_type().as_deref() != Some("multipart/form-data") {
        return Ok(req.body());
    }
    match req.form_part("image") {
        Ok(Some(part)) => Ok(part.data),
        Ok(None) => Err(HttpError::bad_request(
            "the multipart form has no field named \"image\"",
        )),
        Err(e) => Err(HttpError::bad_request(e.to_string())),
    }
}

/// Model input from any decoded image: 8-bit grey/RGB(A) buffers are used as they are (no copy
/// of a large photo), other layouts (16-bit, float) are converted to RGB8 first.
fn to_input(image: DynamicImage) -> Vec<f32> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixels = |channels: usize, data: &[u8]| {
        preprocess::preprocess(&Pixels {
            width,
            height,
            channels,
            data,
        })
    };
    match &image {
        DynamicImage::ImageLuma8(b) => pixels(1, b.as_raw()),
        DynamicImage::ImageLumaA8(b) => pixels(2, b.as_raw()),
        DynamicImage::ImageRgb8(b) => pixels(3, b.as_raw()),
        DynamicImage::ImageRgba8(b) => pixels(4, b.as_raw()),
        _ => pixels(3, image.to_rgb8().as_raw()),
    }
}

fn millis(d: std::time::Duration) -> f64 {
    // Three decimals are plenty and keep the JSON short.
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenn_guest::IntoResponse;

    fn request(method: &str, query: &str, content_type: &str, body: &[u8]) -> Response {
        let req = Request::builder()
            .method(method)
            .query(query)
            .header("content-type", content_type)
            .config("model", "efficientnet-lite0")
            .config("backend", "ort")
            .body(body)
            .build();
        handle(req).into_response()
    }

    fn error_of(r: &Response) -> String {
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        v["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn labels_are_the_imagenet_classes() {
        let labels: Vec<&str> = LABELS.lines().collect();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[282], "tiger cat");
    }

    #[test]
    fn k_is_validated() {
        assert_eq!(parse_k(None), Ok(5));
        assert_eq!(parse_k(Some("1")), Ok(1));
        assert_eq!(parse_k(Some("100")), Ok(100));
        for bad in ["0", "101", "-1", "abc", "", "2.5"] {
            assert!(parse_k(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_errors() {
        let r = request("GET", "", "", b"");
        assert_eq!(r.status(), 405);
        assert_eq!(r.header("allow"), Some("POST"));
        assert_eq!(request("POST", "k=0", "image/jpeg", b"x").status(), 400);
        let r = request("POST", "", "image/jpeg", b"");
        assert_eq!(r.status(), 400);
        assert!(error_of(&r).contains("empty body"));
        assert_eq!(
            request("POST", "", "text/plain", b"hello there").status(),
            415
        );
        let r = request(
            "POST",
            "",
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--b--\r\n",
        );
        assert_eq!(r.status(), 400);
        assert!(error_of(&r).contains("\"image\""));
    }

    #[test]
    fn a_valid_image_reaches_the_model() {
        // Natively there is no wasi-nn: the handler gets as far as loading the model.
        let mut png = Vec::new();
        image::RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let r = request("POST", "backend=tract", "image/png", &png);
        assert_eq!(r.status(), 404, "{}", error_of(&r));
    }
}
