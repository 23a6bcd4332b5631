//! `digits`: hand-written digit recognition, an example app with its own model.
//!
//! The model (`model/digits.onnx`, a small MLP trained on scikit-learn's 8x8 digits by
//! `scripts/models/train_digits.py`) is bundled with the app: its manifest lists it under
//! `[[bundled_models]]` and the guest loads it by its bare name, `digits`.
//!
//! `POST /v1/digits[?backend=ort|tract]` with
//! - a PNG drawing (`image/png`, e.g. a canvas's `toBlob()`; dark ink on a light background or
//!   light ink on a dark one, any size up to 2048x2048), as the body or as the `image` field of
//!   a `multipart/form-data` form; or
//! - `application/json` `{"pixels": [64 numbers 0..16]}`: an 8x8 digit, row-major, as in the
//!   data set.
//!
//! ```json
//! {"model":"digits","digit":3,"probabilities":[0.0,0.01,...],"pixels":[0,0,5,13,...],
//!  "timing_ms":{"total":1.9,"preprocess":1.2,"inference":0.3}}
//! ```
//!
//! `pixels` is the 8x8 input the model saw. Errors: empty body 400, not a PNG 415, corrupt PNG
//! 400, image too large 413, nothing drawn 422, bad JSON or not 64 pixels in 0..16 400.

mod preprocess;

use std::io::Cursor;
use std::time::Instant;

use edgenn_guest::nn::{self, Model, NnError, Tensor};
use edgenn_guest::{HttpError, Request, Response};
use image::codecs::png::PngDecoder;
use image::{DynamicImage, Limits};
use serde::{Deserialize, Serialize};

use preprocess::{Gray, MAX_VALUE, SIDE};

const DEFAULT_MODEL: &str = "digits";
/// Largest accepted width or height of a drawing.
const MAX_SIDE: u32 = 2048;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn main() {
    edgenn_guest::run(handle);
}

#[derive(Serialize)]
struct Answer<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a str>,
    digit: usize,
    probabilities: Vec<f32>,
    pixels: Vec<f32>,
    timing_ms: Timing,
}

#[derive(Serialize)]
struct Timing {
    total: f64,
    preprocess: f64,
    inference: f64,
}

/// The JSON body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    pixels: Vec<f64>,
}

fn handle(req: Request) -> Result<Response, HttpError> {
    let started = Instant::now();
    if req.method() != "POST" {
        return Err(HttpError::method_not_allowed(
            "POST",
            "use POST with a PNG drawing, or JSON {\"pixels\": [64 numbers 0..16]}",
        ));
    }
    let pixels = input_pixels(&req)?;
    let preprocess = started.elapsed();

    let choice = req.model_choice(DEFAULT_MODEL);
    let inference_started = Instant::now();
    let logits = run_model(&choice.reference(), &pixels)?;
    let inference = inference_started.elapsed();
    if logits.len() != 10 {
        return Err(HttpError::new(
            500,
            format!(
                "model {} gave {} outputs, not 10",
                choice.reference(),
                logits.len()
            ),
        ));
    }
    let probabilities = nn::softmax(&logits);
    let digit = nn::top_k(&probabilities, 1)[0].0;
    Ok(Response::json(
        200,
        &Answer {
            model: &choice.name,
            backend: choice.backend.as_deref(),
            digit,
            probabilities: probabilities.iter().map(|&p| round(p, 1e6)).collect(),
            pixels: pixels.to_vec(),
            timing_ms: Timing {
                total: millis(started.elapsed()),
                preprocess: millis(preprocess),
                inference: millis(inference),
            },
        },
    ))
}

fn run_model(name: &str, pixels: &[f32; SIDE * SIDE]) -> Result<Vec<f32>, NnError> {
    let model = Model::load(name)?;
    model.run_f32(&[Tensor::f32(&[1, SIDE * SIDE], pixels)])
}

/// The 8x8 model input from the request: JSON pixels, or a PNG (body or form field `image`).
fn input_pixels(req: &Request) -> Result<[f32; SIDE * SIDE], HttpError> {
    match req.media_type().as_deref() {
        Some("application/json") => json_pixels(req.body()),
        Some("multipart/form-data") => match req.form_part("image") {
            Ok(Some(part)) => png_pixels(part.data),
            Ok(None) => Err(HttpError::new(
                400,
                "the multipart form has no field named \"image\"",
            )),
            Err(e) => Err(HttpError::new(400, e.to_string())),
        },
        _ => png_pixels(req.body()),
    }
}

fn json_pixels(body: &[u8]) -> Result<[f32; SIDE * SIDE], HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::new(
            400,
            "empty body: send {\"pixels\": [64 numbers 0..16]}",
        ));
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        HttpError::new(
            400,
            format!("the body must be JSON like {{\"pixels\": [64 numbers 0..16]}}: {e}"),
        )
    })?;
    if body.pixels.len() != SIDE * SIDE {
        return Err(HttpError::new(
            400,
            format!(
                "pixels must have {} values (8x8, row-major), not {}",
                SIDE * SIDE,
                body.pixels.len()
            ),
        ));
    }
    let mut out = [0f32; SIDE * SIDE];
    for (i, (o, &v)) in out.iter_mut().zip(&body.pixels).enumerate() {
        if !(0.0..=f64::from(MAX_VALUE)).contains(&v) {
            return Err(HttpError::new(
                400,
                format!("pixels[{i}] is {v}: every value must be from 0 to 16"),
            ));
        }
        *o = v as f32;
    }
    Ok(out)
}

fn png_pixels(bytes: &[u8]) -> Result<[f32; SIDE * SIDE], HttpError> {
    let gray = decode_gray(bytes)?;
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    preprocess::pixels(&Gray {
        width,
        height,
        data: gray.as_raw(),
    })
    .map_err(|_| HttpError::new(422, "nothing drawn: no ink stands out from the background"))
}

/// Decodes a PNG to grey, with limits checked from the header before any pixel memory is
/// allocated. Transparent pixels are put on a background that contrasts with the opaque ones
/// (a canvas with black strokes on nothing gets white paper; white strokes get black).
fn decode_gray(bytes: &[u8]) -> Result<image::GrayImage, HttpError> {
    if bytes.is_empty() {
        return Err(HttpError::new(
            400,
            "empty body: POST a PNG drawing, or JSON {\"pixels\": [64 numbers 0..16]}",
        ));
    }
    if !bytes.starts_with(PNG_SIGNATURE) {
        return Err(HttpError::new(
            415,
            "not a PNG image: POST a PNG drawing (image/png), or application/json {\"pixels\": [...]}",
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // Room for the largest image as 16-bit RGBA, no more.
    limits.max_alloc = Some(u64::from(MAX_SIDE) * u64::from(MAX_SIDE) * 8 + (4 << 20));
    let too_large = || {
        HttpError::new(
            413,
            format!("image too large: at most {MAX_SIDE}x{MAX_SIDE} pixels"),
        )
    };
    // The size first, from the IHDR chunk (the decoder refuses huge images without saying
    // how large they are).
    if let Some((w, h)) = png_size(bytes) {
        if w > MAX_SIDE || h > MAX_SIDE {
            return Err(too_large());
        }
        if w == 0 || h == 0 {
            return Err(HttpError::new(400, "the image has no pixels"));
        }
    }
    let decoder = PngDecoder::with_limits(Cursor::new(bytes), limits.clone())
        .map_err(|e| corrupt(e, &too_large))?;
    let image = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(e, &too_large))?;
    Ok(to_gray(image))
}

fn corrupt(e: image::ImageError, too_large: &dyn Fn() -> HttpError) -> HttpError {
    match e {
        image::ImageError::Limits(_) => too_large(),
        e => HttpError::new(400, format!("corrupt or truncated PNG image: {e}")),
    }
}

/// Width and height from a PNG's IHDR chunk, which must come first.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(PNG_SIGNATURE) || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    Some((be(16)?, be(20)?))
}

/// Grey, with any transparency flattened onto a contrasting background.
fn to_gray(image: DynamicImage) -> image::GrayImage {
    if !image.color().has_alpha() {
        return image.into_luma8();
    }
    let la = image.into_luma_alpha8();
    let (mut sum, mut count) = (0u64, 0u64);
    for p in la.pixels() {
        if p[1] >= 128 {
            sum += u64::from(p[0]);
            count += 1;
        }
    }
    // Dark (or no) opaque pixels: white paper; light ones: black.
    let paper: u32 = if count == 0 || sum < 128 * count {
        255
    } else {
        0
    };
    image::GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [l, a] = la.get_pixel(x, y).0;
        let (l, a) = (u32::from(l), u32::from(a));
        image::Luma([((l * a + paper * (255 - a) + 127) / 255) as u8])
    })
}

fn round(v: f32, scale: f32) -> f32 {
    (v * scale).round() / scale
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenn_guest::IntoResponse;

    fn respond(req: Request) -> Response {
        handle(req).into_response()
    }

    fn request(method: &str, query: &str, content_type: &str, body: &[u8]) -> Request {
        Request::from_cgi_vars(
            [
                ("REQUEST_METHOD", method),
                ("QUERY_STRING", query),
                ("CONTENT_TYPE", content_type),
            ],
            body.to_vec(),
        )
    }

    fn error_of(r: &Response) -> String {
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        v["error"].as_str().unwrap().to_owned()
    }

    fn png(image: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// A white 60x80 canvas with a black bar, in the given colour layout.
    fn bar_png(alpha: bool) -> Vec<u8> {
        let rgba = image::RgbaImage::from_fn(60, 80, |x, y| {
            let ink = (25..35).contains(&x) && (10..70).contains(&y);
            match (ink, alpha) {
                (true, _) => image::Rgba([0, 0, 0, 255]),
                (false, false) => image::Rgba([255, 255, 255, 255]),
                // A canvas that was never filled: transparent black.
                (false, true) => image::Rgba([0, 0, 0, 0]),
            }
        });
        if alpha {
            png(DynamicImage::ImageRgba8(rgba))
        } else {
            png(DynamicImage::ImageRgb8(
                DynamicImage::ImageRgba8(rgba).to_rgb8(),
            ))
        }
    }

    #[test]
    fn golden_drawings_match_the_training_script() {
        #[derive(Deserialize)]
        struct Golden {
            cases: Vec<Case>,
        }
        #[derive(Deserialize)]
        struct Case {
            file: String,
            digit: usize,
            pixels: Vec<f32>,
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
        let golden: Golden =
            serde_json::from_slice(&std::fs::read(format!("{dir}/golden.json")).unwrap()).unwrap();
        assert!(golden.cases.len() >= 3);
        for case in golden.cases {
            let bytes = std::fs::read(format!("{dir}/{}", case.file)).unwrap();
            let ours = png_pixels(&bytes).unwrap();
            // Same algorithm, same f64 arithmetic; only the summation order of the area
            // average differs, which could flip a grid pixel exactly at the threshold.
            let diff: f32 = ours
                .iter()
                .zip(&case.pixels)
                .map(|(a, b)| (a - b).abs())
                .sum();
            assert!(
                diff <= 2.0,
                "{} (a {}): {ours:?} vs {:?}",
                case.file,
                case.digit,
                case.pixels
            );
        }
    }

    #[test]
    fn transparent_canvases_are_flattened() {
        let opaque = png_pixels(&bar_png(false)).unwrap();
        let transparent = png_pixels(&bar_png(true)).unwrap();
        assert_eq!(opaque, transparent);
        assert!(opaque.iter().sum::<f32>() > 100.0);
        // White strokes on a transparent canvas: black paper.
        let white = image::RgbaImage::from_fn(60, 80, |x, y| {
            if (25..35).contains(&x) && (10..70).contains(&y) {
                image::Rgba([255, 255, 255, 255])
            } else {
                image::Rgba([255, 255, 255, 0])
            }
        });
        assert_eq!(
            png_pixels(&png(DynamicImage::ImageRgba8(white))).unwrap(),
            opaque
        );
    }

    #[test]
    fn client_errors() {
        let r = respond(request("GET", "", "", b""));
        assert_eq!((r.status(), r.header("allow")), (405, Some("POST")));
        for (content_type, body, status, needle) in [
            ("image/png", &b""[..], 400, "empty body"),
            ("", b"", 400, "empty body"),
            ("image/png", b"GIF89a....", 415, "not a PNG"),
            ("text/plain", b"hello", 415, "not a PNG"),
            ("image/png", b"\x89PNG\r\n\x1a\nbroken", 400, "corrupt"),
            ("application/json", b"", 400, "empty body"),
            (
                "application/json",
                b"{\"pixels\": [1, 2]}",
                400,
                "64 values",
            ),
            ("application/json", b"{\"pixel\": []}", 400, "JSON like"),
            ("application/json", b"[1, 2, 3]", 400, "JSON like"),
            ("application/json", b"{\"pixels\": [1, 2", 400, "JSON like"),
            (
                "application/json; charset=utf-8",
                b"{\"pixels\": 5}",
                400,
                "JSON like",
            ),
        ] {
            let r = respond(request("POST", "", content_type, body));
            assert_eq!(r.status(), status, "{content_type} {body:?}");
            assert!(error_of(&r).contains(needle), "{}", error_of(&r));
        }
        let mut out_of_range = vec![0.0; 64];
        out_of_range[9] = 16.5;
        let body = serde_json::json!({ "pixels": out_of_range }).to_string();
        let r = respond(request("POST", "", "application/json", body.as_bytes()));
        assert_eq!(r.status(), 400);
        assert!(error_of(&r).contains("pixels[9]"));
        let body = br#"{"pixels": [-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}"#;
        assert_eq!(
            respond(request("POST", "", "application/json", body)).status(),
            400
        );
    }

    #[test]
    fn blank_canvas_is_422() {
        let blank = png(DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            280,
            280,
            image::Rgb([255, 255, 255]),
        )));
        let r = respond(request("POST", "", "image/png", &blank));
        assert_eq!(r.status(), 422);
        assert!(error_of(&r).contains("nothing drawn"));
        // A canvas never drawn on: fully transparent.
        let empty = png(DynamicImage::ImageRgba8(image::RgbaImage::new(50, 50)));
        assert_eq!(
            respond(request("POST", "", "image/png", &empty)).status(),
            422
        );
    }

    #[test]
    fn huge_png_is_refused_from_its_header() {
        let mut png = PNG_SIGNATURE.to_vec();
        png.extend_from_slice(b"\x00\x00\x00\x0dIHDR");
        png.extend_from_slice(&5000u32.to_be_bytes());
        png.extend_from_slice(&5000u32.to_be_bytes());
        png.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0, 0]);
        let r = respond(request("POST", "", "image/png", &png));
        assert_eq!(r.status(), 413);
        assert_eq!(png_size(&png), Some((5000, 5000)));
    }

    #[test]
    fn valid_inputs_reach_the_model() {
        // Natively there is no wasi-nn: the handler gets as far as loading the model.
        let r = respond(request("POST", "", "image/png", &bar_png(false)));
        assert_eq!(r.status(), 404);
        assert!(error_of(&r).contains("wasi-nn"), "{}", error_of(&r));
        let body = serde_json::json!({ "pixels": vec![8; 64] }).to_string();
        let r = respond(request(
            "POST",
            "backend=ort",
            "application/json",
            body.as_bytes(),
        ));
        assert!(error_of(&r).contains("wasi-nn"), "{}", error_of(&r));
        // As a multipart form field.
        let mut form = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
        form.extend_from_slice(&bar_png(true));
        form.extend_from_slice(b"\r\n--b--\r\n");
        let r = respond(request(
            "POST",
            "",
            "multipart/form-data; boundary=b",
            &form,
        ));
        assert_eq!(r.status(), 404);
        let r = respond(request(
            "POST",
            "",
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--b--\r\n",
        ));
        assert_eq!(r.status(), 400);
    }
}
