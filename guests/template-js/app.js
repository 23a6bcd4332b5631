// my-app: the starting point for an edgenn app in JavaScript. Copy this directory (or let
// `edgenn new my-app --lang js` do it), then replace `parseInput` and `answer` with your own
// pre- and post-processing.
//
// As it is, it runs any model with one input on numbers it is given, and answers the `k` highest
// outputs as probabilities (softmax). With the manifest's default config it runs the shared
// `wordlm` model (32 token ids in, next-token logits out), so it works against the gateway's
// bundled models out of the box. It answers as the Rust template (guests/template) does:
//
//   GET  /v1/my-app                          what the app runs (no model call)
//   GET  /v1/my-app?input=12,7,40&k=3        run the model on these numbers
//   POST /v1/my-app  {"input": [12, 7, 40], "k": 3}
//
// Inputs shorter than the model's input are left-padded with zeros (for wordlm: `<pad>`).
// Answer: `{"model":"wordlm","outputs":6000,"top":[{"index":5,"probability":0.12}, ...]}`.
// Errors are `{"error": message}`: not GET or POST 405, a malformed body, number or `k`, or more
// values than the input takes 400, a model that cannot be loaded 404, a failed inference or a
// bad [config] 500.
//
// How it works: `jco componentize` (componentize-js, StarlingMonkey) builds this ES module into
// a WebAssembly component for the `edgenn:app/app` world (wit/ in the edgenn checkout; see
// README.md), which exports `wasi:http/incoming-handler`. The gateway starts a fresh instance
// for every request and calls `incomingHandler.handle`; the app's [config] is its environment
// (EDGENN_CONFIG_<KEY>), models are loaded by name through `wasi:nn` and their bytes stay in the
// gateway. An exception that escapes `handle` would trap the instance: every error is answered
// instead.
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

const DEFAULT_MODEL = "wordlm";
// Refuse larger inputs early: the model could not take them anyway.
const MAX_VALUES = 1 << 20;
const DEFAULT_K = 5;
const MAX_K = 100;
const USAGE = 'GET ?input=1,2,3&k=5 or POST {"input": [1, 2, 3], "k": 5}';
const BODY_HINT = '{"input": [1, 2, 3], "k": 5}';
// The element types [config] input_type may name: the wasi:nn type, and the typed array that
// holds the values converted as Rust's `as` does (integers truncated toward zero and saturated,
// NaN 0; a Float32Array rounds, and is infinite past the largest f32).
const INPUT_TYPES = {
  f32: { ty: "FP32", encode: (values) => Float32Array.from(values) },
  i32: {
    ty: "I32",
    encode: (values) => Int32Array.from(values, (v) => saturate(v, -(2 ** 31), 2 ** 31 - 1)),
  },
  i64: { ty: "I64", encode: (values) => BigInt64Array.from(values, toI64) },
};
const MAX_I64 = 2n ** 63n - 1n;
// The numbers Rust's str::parse::<f64>() reads, so both templates accept the same queries
// (Number() would also take "0x10" and "", and parseFloat "1abc").
const NUMBER = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$/i;
const UNSIGNED = /^\+?[0-9]+$/;
// blocking-write-and-flush takes at most 4096 bytes per call (wasi:io/streams).
const WRITE_CHUNK = 4096;
const READ_CHUNK = 64n * 1024n; // a u64

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
      body = handleRequest(request);
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

function handleRequest(request) {
  const path = request.pathWithQuery() ?? "";
  const query = new URLSearchParams(path.includes("?") ? path.slice(path.indexOf("?") + 1) : "");
  let settings;
  try {
    settings = readSettings(query);
  } catch (e) {
    // Configuration errors are the deployer's, not the client's: 500.
    throw new HttpError(500, `app configuration: ${e.message}`);
  }
  let body;
  switch (request.method().tag) {
    case "get":
      body = {};
      break;
    case "post":
      body = parseBody(readBody(request));
      break;
    default:
      throw new HttpError(405, "use GET or POST", [["allow", "GET, POST"]]);
  }
  const values = parseInput(query, body.input);
  if (values === null) {
    // Nothing to run: describe the app instead (a cheap health check, no model call).
    return {
      app: "my-app",
      input_shape: settings.inputShape,
      input_type: settings.inputType,
      model: settings.reference,
      usage: USAGE,
    };
  }
  const k = chooseK(query, body.k);
  const outputs = infer(settings, values);
  return answer(settings, outputs, k);
}

/** The app's settings, from the manifest's [config] and the request's ?model=/?backend=. */
function readSettings(query) {
  // Read per request, not at the top level: that runs when the component is built (the
  // snapshot), not in the gateway.
  const env = new Map(getEnvironment());
  // The gateway passes [config] key as EDGENN_CONFIG_<KEY>.
  const config = (key) => env.get(`EDGENN_CONFIG_${key.toUpperCase().replaceAll("-", "_")}`);
  // As the Rust SDK's model_choice: ?model=, else [config] model, else wordlm; on ?backend=,
  // else [config] backend, else the model's default backend.
  const model = query.get("model") ?? config("model") ?? DEFAULT_MODEL;
  const backend = query.get("backend") ?? config("backend") ?? null;
  const inputType = config("input_type") ?? "i32";
  if (!Object.hasOwn(INPUT_TYPES, inputType)) {
    throw new Error(`input_type ${JSON.stringify(inputType)} is not f32, i32 or i64`);
  }
  const shape = config("input_shape") ?? "1,32";
  const dims = shape.split(",").map((d) => d.trim());
  if (!dims.every((d) => UNSIGNED.test(d) && Number(d) > 0)) {
    throw new Error(`input_shape ${JSON.stringify(shape)} must be positive integers like "1,32"`);
  }
  return {
    model,
    // What load-by-name takes; the host resolves "name@backend".
    reference: backend === null ? model : `${model}@${backend}`,
    inputType,
    inputShape: dims.map(Number),
  };
}

/** The POST body's `input` and `k` (either may be missing); an empty body is `{}`. */
function parseBody(bytes) {
  let body;
  try {
    // fatal: a body that is not UTF-8 is refused, not read with replacement characters.
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (!text.trim()) {
      return {};
    }
    // Unlike serde in the Rust template, JSON.parse cannot tell `"k": 2.0` from `"k": 2`, and
    // keeps the last of a field given twice: both are taken here, where Rust refuses them.
    body = JSON.parse(text);
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new Error("expected an object with the fields `input` and `k`");
    }
    // A typo must be a clear 400, not a silently ignored field.
    const unknown = Object.keys(body).find((key) => key !== "input" && key !== "k");
    if (unknown !== undefined) {
      throw new Error(`unknown field \`${unknown}\`, expected \`input\` or \`k\``);
    }
    const { input = null, k = null } = body;
    if (input !== null && !(Array.isArray(input) && input.every((v) => typeof v === "number"))) {
      throw new Error("`input` must be a list of numbers");
    }
    if (input?.some((v) => !Number.isFinite(v))) {
      throw new Error("number out of range"); // 1e400 reads as Infinity
    }
    if (k !== null && !(Number.isInteger(k) && k >= 0)) {
      throw new Error("`k` must be a non-negative integer");
    }
    return { input, k };
  } catch (e) {
    throw new HttpError(400, `the body must be JSON like ${BODY_HINT}: ${e.message}`);
  }
}

/** The numbers to run the model on: the JSON body's `input`, else `?input=1,2,3`, else null. */
function parseInput(query, fromBody) {
  if (fromBody != null) {
    return fromBody;
  }
  const text = query.get("input");
  if (text === null) {
    return null;
  }
  return text
    .split(",")
    .filter((piece) => piece.trim())
    .map((piece) => {
      if (!NUMBER.test(piece.trim())) {
        throw new HttpError(400, `input value ${JSON.stringify(piece)} is not a number`);
      }
      return number(piece.trim());
    });
}

function number(text) {
  // Number() reads "Infinity" but not Rust's "inf" nor "nan".
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (!special) {
    return Number(text);
  }
  return special[2].toLowerCase() === "nan" ? NaN : special[1] === "-" ? -Infinity : Infinity;
}

/** How many outputs to answer: the body's `k`, else `?k=`, else DEFAULT_K. */
function chooseK(query, fromBody) {
  let k = fromBody;
  if (k == null) {
    const text = query.get("k");
    if (text === null) {
      return DEFAULT_K;
    }
    k = UNSIGNED.test(text.trim()) ? Number(text.trim()) : 0;
  }
  if (!(k >= 1 && k <= MAX_K)) {
    throw new HttpError(400, `k must be an integer from 1 to ${MAX_K}`);
  }
  return k;
}

/**
 * Builds the input tensor (left-padded with zeros to the configured shape) and runs the model:
 * the f32 values of its first output.
 *
 * Every resource is disposed of as soon as it is done with: the host holds the tensors' memory,
 * counted against the app's memory limit, until they are (the garbage collector would get to
 * them only at its leisure).
 */
function infer(settings, values) {
  const shape = settings.inputShape;
  const size = shape.reduce((a, b) => a * b, 1);
  if (values.length > Math.min(size, MAX_VALUES)) {
    const dims = `[${shape.join(", ")}]`; // as Rust prints a Vec
    throw new HttpError(
      400,
      `input tensor 0: ${values.length} values for input shape ${dims} (at most ${size})`,
    );
  }
  const padded = new Array(size - values.length).fill(0).concat(values);
  const { ty, encode } = INPUT_TYPES[settings.inputType];
  const data = new Uint8Array(encode(padded).buffer); // wasm is little-endian

  let graph;
  try {
    // Loading is cheap: the gateway keeps compiled models cached across requests and apps.
    graph = loadByName(settings.reference);
  } catch (e) {
    // A model that cannot be loaded is the client's 404 (no such model or backend, or one the
    // app does not declare); the host's error says which.
    const reference = JSON.stringify(settings.reference);
    throw new HttpError(404, `cannot load model ${reference}: ${nnError(e)}`);
  }
  let context;
  let outputs = [];
  try {
    context = graph.initExecutionContext();
    // compute takes the input tensor (an `own` handle): it is the host's from then on, and
    // disposing of it here would drop whatever resource reuses its handle (an output). It is
    // named by its index, as the Rust SDK names its inputs: edgenn takes a name that is not one
    // of the model's inputs but a number as an index (WIT has no call to list the names).
    const input = new Tensor(new Uint32Array(shape), ty, data);
    outputs = context.compute([["0", input]]);
    return firstOutput(outputs);
  } catch (e) {
    if (e instanceof HttpError) {
      throw e;
    }
    throw new HttpError(500, `inference failed: ${nnError(e)}`);
  } finally {
    for (const [, output] of outputs) {
      output[Symbol.dispose]();
    }
    context?.[Symbol.dispose]();
    graph[Symbol.dispose]();
  }
}

/** Rust's `v as i32` / `v as i64`: NaN 0, truncated toward zero, saturated at the type's range. */
function saturate(v, low, high) {
  return Number.isNaN(v) ? 0 : Math.trunc(Math.min(high, Math.max(low, v)));
}

function toI64(v) {
  // 2 ** 63 is the nearest double to i64::MAX, but one past it as a BigInt.
  const big = BigInt(saturate(v, -(2 ** 63), 2 ** 63));
  return big > MAX_I64 ? MAX_I64 : big;
}

function firstOutput(outputs) {
  if (outputs.length === 0) {
    throw new HttpError(500, "inference failed: the model gave no output");
  }
  const [name, output] = outputs[0];
  if (output.ty() !== "FP32") {
    throw new HttpError(500, `inference failed: output ${JSON.stringify(name)} is not f32`);
  }
  const raw = output.data();
  // Copied: the bytes need not be 4-byte aligned for a Float32Array view.
  return Array.from(new Float32Array(raw.slice(0, raw.length - (raw.length % 4)).buffer));
}

/** Post-processing: the `k` highest outputs as softmax probabilities, best first. */
function answer(settings, outputs, k) {
  const probabilities = softmax(outputs);
  // Ties go to the lower index and NaN ranks last, as the Rust SDK's nn::top_k.
  const score = (i) => (Number.isNaN(probabilities[i]) ? -Infinity : probabilities[i]);
  const best = probabilities
    .map((_, i) => i)
    .sort((a, b) => (score(a) === score(b) ? a - b : score(b) - score(a)))
    .slice(0, k);
  return {
    model: settings.model,
    outputs: outputs.length,
    top: best.map((index) => ({ index, probability: asF32(probabilities[index]) })),
  };
}

/** As the Rust SDK's nn::softmax: max subtracted first, evenly spread if that is not finite. */
function softmax(logits) {
  const top = logits.reduce((a, x) => (x > a ? x : a), -Infinity); // NaN ignored, as f32::max
  if (!Number.isFinite(top)) {
    const hits = Math.max(1, logits.filter((x) => x === top).length);
    return logits.map((x) => (x === top ? 1 / hits : 0));
  }
  const exps = logits.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((x) => x / total);
}

/**
 * `value` as the Rust template prints its f32 probabilities: the shortest decimal that reads
 * back as the same f32 (0.12, not 0.11999999731779099); NaN as null. The softmax here is
 * computed in double precision, so the last digit may differ from the Rust template's.
 */
function asF32(value) {
  if (Number.isNaN(value)) {
    return null;
  }
  const rounded = Math.fround(value);
  for (let digits = 1; digits <= 9; digits++) {
    const short = Number(rounded.toPrecision(digits));
    if (Math.fround(short) === rounded) {
      return short;
    }
  }
  return rounded;
}

/** A description of a failed wasi-nn call (its `errors.error` is disposed of). */
function nnError(e) {
  const error = e?.payload;
  if (!error || typeof error.code !== "function") {
    return String(e?.message ?? e);
  }
  try {
    const code = error.code();
    const data = error.data();
    return data ? `${code}: ${data}` : code;
  } finally {
    error[Symbol.dispose]();
  }
}

/**
 * The whole request body. The gateway refuses bodies over the manifest's max_body_bytes before
 * the app runs, so this needs no limit of its own.
 */
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
