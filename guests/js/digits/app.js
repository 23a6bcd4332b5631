// `digits-js`: hand-written digit recognition, the `digits` example as a JavaScript component.
//
// Built by `jco componentize` (componentize-js, StarlingMonkey) against the `edgenn:app/app`
// world in wit/ (scripts/build-components.sh): the module exports `wasi:http/incoming-handler`
// and runs the app's bundled model `digits` through `wasi:nn`. It answers like the Rust app
// (guests/digits) does for JSON input, so a client can use either:
//
//   POST /v1/digits-js[?backend=ort|tract][&model=digits]
//   content-type: application/json
//   {"pixels": [64 numbers 0..16]}     (an 8x8 digit, row-major, as in scikit-learn's data set)
//
//   200 {"model":"digits","digit":3,"probabilities":[...10],"pixels":[...64],
//        "timing_ms":{"total":1.9,"preprocess":0.1,"inference":0.3}}
//
// Errors are `{"error": message}`: not POST 405, a media type other than JSON 415 (PNG drawings
// are only read by the Rust app), empty body or not 64 numbers in 0..16 400, a body over 64 KiB
// 413, a model that cannot be loaded 404 (as the Rust SDK answers), a failed inference 500.
//
// The model is chosen as the Rust SDK's `model_choice` does: `?model=`, else the app's [config]
// `model` (the gateway passes it as EDGENN_CONFIG_MODEL), else `digits`; `?backend=`, else
// [config] `backend`, else the model's default.
//
// Imports that return a WIT `result` throw its error; the payload is on the exception's
// `payload` (an `errors.error` resource for wasi:nn, a `stream-error` for streams).

import { getEnvironment } from "wasi:cli/environment@0.2.12";
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";
import { loadByName } from "wasi:nn/graph@0.2.0-rc-2024-10-28";
import { Tensor } from "wasi:nn/tensor@0.2.0-rc-2024-10-28";

const DEFAULT_MODEL = "digits";
const PIXELS = 8 * 8;
const MAX_VALUE = 16;
// The graph's input and output names (from the ONNX file, made by scripts/models/train_digits.py).
const INPUT_NAME = "pixels";
const OUTPUT_NAME = "logits";
// JSON for 64 pixels is well under 1 KiB; the gateway's max_body_bytes stops larger bodies
// first, this only bounds what the guest buffers if it is configured higher.
const MAX_BODY_BYTES = 64 * 1024;
// blocking-write-and-flush takes at most 4096 bytes per call (wasi:io/streams).
const WRITE_CHUNK = 4096;
const READ_CHUNK = 64n * 1024n; // a u64
// Error messages as the Rust app words them, so both answer alike.
const SHAPE_HINT = '{"pixels": [64 numbers 0..16]}';
const PNG_HINT = "the Rust app, /v1/digits, reads PNG drawings";

/** An error answer: `status` with the body `{"error": message}`. */
class HttpError extends Error {
  constructor(status, message, headers = []) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** The exported `wasi:http/incoming-handler`: one call per request, in a fresh instance. */
export const incomingHandler = {
  handle(request, responseOut) {
    let status = 200;
    let body;
    let headers = [];
    try {
      body = answer(request);
    } catch (e) {
      if (e instanceof HttpError) {
        ({ status, headers } = e);
        body = { error: e.message };
      } else {
        // A bug must still become a JSON answer, not a trap.
        console.error(e?.stack ?? e); // for the gateway's log
        status = 500;
        body = { error: `internal error: ${e}` };
      }
    }
    respond(responseOut, status, body, headers);
  },
};

function answer(request) {
  const started = performance.now();
  if (request.method().tag !== "post") {
    throw new HttpError(405, `use POST with JSON ${SHAPE_HINT}`, [["allow", "POST"]]);
  }
  const mediaType = header(request, "content-type").split(";")[0].trim().toLowerCase();
  if (mediaType && mediaType !== "application/json") {
    throw new HttpError(415, `send application/json ${SHAPE_HINT} (${PNG_HINT})`);
  }
  const pixels = jsonPixels(readBody(request));
  const preprocess = performance.now() - started;

  const path = request.pathWithQuery() ?? "";
  const query = new URLSearchParams(path.includes("?") ? path.slice(path.indexOf("?") + 1) : "");
  // As the Rust SDK's model_choice: ?model=, else the app's [config] model (which the gateway
  // puts in the environment), else `digits`; likewise ?backend=. The host resolves
  // "name@backend".
  const env = config();
  const name = query.get("model") || env.get("EDGENN_CONFIG_MODEL") || DEFAULT_MODEL;
  const backend = query.get("backend") || env.get("EDGENN_CONFIG_BACKEND") || undefined;
  const reference = backend ? `${name}@${backend}` : name;

  const inferenceStarted = performance.now();
  const logits = runModel(reference, pixels);
  const inference = performance.now() - inferenceStarted;
  if (logits.length !== 10) {
    throw new HttpError(500, `model ${reference} gave ${logits.length} outputs, not 10`);
  }
  const probabilities = softmax(logits);
  // The best digit, ties to the lower one (as nn::top_k).
  const digit = probabilities.reduce((best, p, i) => (p > probabilities[best] ? i : best), 0);
  return {
    model: name,
    ...(backend ? { backend } : {}),
    digit,
    probabilities: probabilities.map((p) => Math.round(p * 1e6) / 1e6),
    pixels,
    timing_ms: {
      total: millis(performance.now() - started),
      preprocess: millis(preprocess),
      inference: millis(inference),
    },
  };
}

/** The 64 pixels of `{"pixels": [...]}`, checked as the Rust app checks them. */
function jsonPixels(bytes) {
  const text = new TextDecoder().decode(bytes);
  if (!text.trim()) {
    throw new HttpError(400, `empty body: send ${SHAPE_HINT}`);
  }
  let pixels;
  try {
    const value = JSON.parse(text);
    const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
    if (!isObject || !("pixels" in value)) {
      throw new Error("expected an object with the field `pixels`");
    }
    const unknown = Object.keys(value).find((k) => k !== "pixels");
    if (unknown !== undefined) {
      throw new Error(`unknown field \`${unknown}\`, expected \`pixels\``);
    }
    pixels = value.pixels;
    if (!Array.isArray(pixels) || !pixels.every((v) => typeof v === "number")) {
      throw new Error("`pixels` must be a list of numbers");
    }
  } catch (e) {
    throw new HttpError(400, `the body must be JSON like ${SHAPE_HINT}: ${e.message}`);
  }
  if (pixels.length !== PIXELS) {
    throw new HttpError(
      400,
      `pixels must have ${PIXELS} values (8x8, row-major), not ${pixels.length}`,
    );
  }
  pixels.forEach((v, i) => {
    // JSON has no NaN; a number too large to read is Infinity, which this refuses too.
    if (!(v >= 0 && v <= MAX_VALUE)) {
      throw new HttpError(400, `pixels[${i}] is ${v}: every value must be from 0 to 16`);
    }
  });
  return pixels;
}

/**
 * Logits of model `reference` for one 8x8 digit, through wasi:nn.
 *
 * Every resource is disposed of as soon as it is done with: the host holds the tensors'
 * memory, counted against the app's memory limit, until they are (the garbage collector would
 * get to them only at its leisure).
 */
function runModel(reference, pixels) {
  let graph;
  try {
    graph = loadByName(reference);
  } catch (e) {
    // As the Rust SDK: a model that cannot be loaded is the client's 404 (no such model or
    // backend, or one the app does not declare); the host's error says which.
    throw new HttpError(404, `cannot load model ${JSON.stringify(reference)}: ${nnError(e).text}`);
  }
  let context;
  let outputs = [];
  try {
    context = graph.initExecutionContext();
    const data = new Uint8Array(new Float32Array(pixels).buffer); // wasm is little-endian
    // compute takes the input tensor (an `own` handle): it is the host's from then on, and
    // disposing of it here would drop whatever resource reuses its handle (the output).
    const input = new Tensor(new Uint32Array([1, PIXELS]), "FP32", data);
    outputs = context.compute([[INPUT_NAME, input]]);
    return logitsOf(reference, outputs);
  } catch (e) {
    if (e instanceof HttpError) {
      throw e;
    }
    const { code, text } = nnError(e);
    throw new HttpError(code === "not-found" ? 404 : 500, `inference failed: ${text}`);
  } finally {
    for (const [, output] of outputs) {
      output[Symbol.dispose]();
    }
    context?.[Symbol.dispose]();
    graph[Symbol.dispose]();
  }
}

/** The f32 values of output `logits`, else of the first output (the model has one). */
function logitsOf(reference, outputs) {
  if (outputs.length === 0) {
    throw new HttpError(500, `model ${reference} gave no output`);
  }
  const output = (outputs.find(([name]) => name === OUTPUT_NAME) ?? outputs[0])[1];
  const ty = output.ty();
  if (ty !== "FP32") {
    throw new HttpError(500, `model ${reference} gave ${ty} output, not FP32`);
  }
  const raw = output.data();
  // Copied: the bytes need not be 4-byte aligned for a Float32Array view.
  const floats = new Float32Array(raw.slice(0, raw.length - (raw.length % 4)).buffer);
  return Array.from(floats);
}

/** The code and a description of a failed wasi-nn call (its `errors.error` is disposed of). */
function nnError(e) {
  const error = e?.payload;
  if (!error || typeof error.code !== "function") {
    return { code: undefined, text: String(e?.message ?? e) };
  }
  try {
    const code = error.code();
    const data = error.data();
    return { code, text: data ? `${code}: ${data}` : code };
  } finally {
    error[Symbol.dispose]();
  }
}

/** As the Rust SDK's nn::softmax: max subtracted first, evenly spread if that is not finite. */
function softmax(logits) {
  const top = Math.max(...logits);
  if (!Number.isFinite(top)) {
    const hits = Math.max(1, logits.filter((x) => x === top).length);
    return logits.map((x) => (x === top ? 1 / hits : 0));
  }
  const exps = logits.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((x) => x / total);
}

/**
 * The environment, which the gateway fills with the app's [config] only. Read per request, not
 * at the top level: that runs when the component is built (the snapshot), not in the gateway.
 */
function config() {
  return new Map(getEnvironment());
}

function header(request, name) {
  const fields = request.headers();
  try {
    const values = fields.get(name);
    return values.length ? new TextDecoder().decode(values[0]) : "";
  } finally {
    fields[Symbol.dispose]();
  }
}

/** The whole request body, at most MAX_BODY_BYTES (else 413). */
function readBody(request) {
  const chunks = [];
  let size = 0;
  const body = request.consume();
  const stream = body.stream();
  try {
    for (;;) {
      let chunk;
      try {
        chunk = stream.blockingRead(READ_CHUNK);
      } catch (e) {
        if (e?.payload?.tag === "closed") {
          break;
        }
        throw new HttpError(400, "cannot read the request body");
      }
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        throw new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
  } finally {
    // The stream is a child of the body: it goes first.
    stream[Symbol.dispose]();
    body[Symbol.dispose]();
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function respond(responseOut, status, value, headers) {
  const encoder = new TextEncoder();
  const data = encoder.encode(JSON.stringify(value));
  const fields = Fields.fromList(
    [
      ["content-type", "application/json"],
      ["content-length", String(data.length)],
      ...headers,
    ].map(([name, v]) => [name, encoder.encode(v)]),
  );
  const response = new OutgoingResponse(fields);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  // The output stream is a child of the body and must be gone before the body is finished.
  const stream = body.write();
  try {
    for (let at = 0; at < data.length; at += WRITE_CHUNK) {
      stream.blockingWriteAndFlush(data.subarray(at, at + WRITE_CHUNK));
    }
  } finally {
    stream[Symbol.dispose]();
  }
  OutgoingBody.finish(body, undefined);
}

function millis(ms) {
  return Math.round(ms * 1e3) / 1e3;
}
