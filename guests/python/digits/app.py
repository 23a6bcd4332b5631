"""`digits-py`: hand-written digit recognition, the `digits` example as a Python component.

Built by componentize-py against the `edgenn:app/app` world in wit/ (scripts/build-components.sh):
the component exports `wasi:http/incoming-handler` and runs the app's bundled model `digits`
through `wasi:nn`. It answers like the Rust app (guests/digits) does for JSON input, so a client
can use either:

    POST /v1/digits-py[?backend=ort|tract][&model=digits]
    content-type: application/json
    {"pixels": [64 numbers 0..16]}     (an 8x8 digit, row-major, as in scikit-learn's data set)

    200 {"model":"digits","digit":3,"probabilities":[...10],"pixels":[...64],
         "timing_ms":{"total":1.9,"preprocess":0.1,"inference":0.3}}

Errors are `{"error": message}`: not POST 405, a media type other than JSON 415 (PNG drawings
are only read by the Rust app), empty body or not 64 numbers in 0..16 400, a body over 64 KiB
413, a model that cannot be loaded 404 (as the Rust SDK answers), a failed inference 500.

The model is chosen as the Rust SDK's `model_choice` does: `?model=`, else the app's [config]
`model` (the gateway passes it as EDGENN_CONFIG_MODEL), else `digits`; `?backend=`, else
[config] `backend`, else the model's default.
"""

import json
import math
import os
import struct
import sys
import time
import traceback
from urllib.parse import parse_qs

# componentize-py resolves imports when it builds the component (a module first imported inside
# a function at run time may not be there), so everything used is imported here, at the top.
from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import errors, graph, tensor
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

DEFAULT_MODEL = "digits"
SIDE = 8
PIXELS = SIDE * SIDE
MAX_VALUE = 16
# The graph's input and output names (from the ONNX file, made by scripts/models/train_digits.py).
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
# JSON for 64 pixels is well under 1 KiB; the gateway's max_body_bytes stops larger bodies
# first, this only bounds what the guest buffers if it is configured higher.
MAX_BODY_BYTES = 64 * 1024
# blocking-write-and-flush takes at most 4096 bytes per call (wasi:io/streams).
WRITE_CHUNK = 4096
READ_CHUNK = 64 * 1024
# Error messages as the Rust app words them, so both answer alike.
SHAPE_HINT = '{"pixels": [64 numbers 0..16]}'
PNG_HINT = "the Rust app, /v1/digits, reads PNG drawings"


class HttpError(Exception):
    """An error answer: `status` with the body `{"error": message}`."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class IncomingHandler(exports.IncomingHandler):
    """The exported `wasi:http/incoming-handler`: one call per request, in a fresh instance."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, body, headers = 200, answer(request), []
        except HttpError as e:
            status, body, headers = e.status, {"error": e.message}, e.headers
        except Exception as e:  # noqa: BLE001 - a bug must still become a JSON answer, not a trap
            traceback.print_exc(file=sys.stderr)  # for the gateway's log
            status, body, headers = 500, {"error": f"internal error: {type(e).__name__}: {e}"}, []
        respond(response_out, status, body, headers)


def answer(request: IncomingRequest) -> dict:
    started = time.perf_counter()
    if not isinstance(request.method(), Method_Post):
        raise HttpError(405, f"use POST with JSON {SHAPE_HINT}", [("allow", b"POST")])
    media_type = header(request, "content-type").split(";")[0].strip().lower()
    if media_type and media_type != "application/json":
        raise HttpError(415, f"send application/json {SHAPE_HINT} ({PNG_HINT})")
    pixels = json_pixels(read_body(request))
    preprocess = time.perf_counter() - started

    query = parse_qs((request.path_with_query() or "").partition("?")[2])
    # As the Rust SDK's model_choice: ?model=, else the app's [config] model (which the gateway
    # puts in the environment), else `digits`; likewise ?backend=. The host resolves
    # "name@backend".
    name = first(query, "model") or os.environ.get("EDGENN_CONFIG_MODEL") or DEFAULT_MODEL
    backend = first(query, "backend") or os.environ.get("EDGENN_CONFIG_BACKEND")
    reference = f"{name}@{backend}" if backend else name

    inference_started = time.perf_counter()
    logits = run_model(reference, pixels)
    inference = time.perf_counter() - inference_started
    if len(logits) != 10:
        raise HttpError(500, f"model {reference} gave {len(logits)} outputs, not 10")
    probabilities = softmax(logits)
    # The best digit, ties to the lower one (as nn::top_k).
    digit = max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))
    out = {"model": name}
    if backend:
        out["backend"] = backend
    out.update(
        digit=digit,
        probabilities=[round(p, 6) for p in probabilities],
        pixels=[float(v) for v in pixels],
        timing_ms={
            "total": millis(time.perf_counter() - started),
            "preprocess": millis(preprocess),
            "inference": millis(inference),
        },
    )
    return out


def json_pixels(body: bytes) -> list:
    """The 64 pixels of `{"pixels": [...]}`, checked as the Rust app checks them."""
    if not body.strip():
        raise HttpError(400, f"empty body: send {SHAPE_HINT}")

    def no_constants(name):
        # Python's json reads NaN and Infinity, which are not JSON.
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(body, parse_constant=no_constants)
        if not isinstance(value, dict) or "pixels" not in value:
            raise ValueError("expected an object with the field `pixels`")
        unknown = [k for k in value if k != "pixels"]
        if unknown:
            raise ValueError(f"unknown field `{unknown[0]}`, expected `pixels`")
        pixels = value["pixels"]
        # bool is an int in Python; JSON true is not a number.
        if not isinstance(pixels, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in pixels
        ):
            raise ValueError("`pixels` must be a list of numbers")
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HttpError(400, f"the body must be JSON like {SHAPE_HINT}: {e}") from None
    if len(pixels) != PIXELS:
        raise HttpError(
            400, f"pixels must have {PIXELS} values (8x8, row-major), not {len(pixels)}"
        )
    for i, v in enumerate(pixels):
        # Exact for integers of any size; NaN fails it, and a float too large to read is inf.
        if not 0 <= v <= MAX_VALUE:
            raise HttpError(400, f"pixels[{i}] is {v}: every value must be from 0 to 16")
    return pixels


def run_model(reference: str, pixels: list) -> list:
    """Logits of model `reference` for one 8x8 digit, through wasi:nn.

    Every resource is dropped as soon as it is done with (the `with` blocks and the outputs'
    `__exit__`): the host holds the tensors' memory, counted against the app's memory limit,
    until they are.
    """
    try:
        loaded = graph.load_by_name(reference)
    except Err as e:
        # As the Rust SDK: a model that cannot be loaded is the client's 404 (no such model or
        # backend, or one the app does not declare); the host's error says which.
        message = f"cannot load model {json.dumps(reference)}: {nn_error(e)[1]}"
        raise HttpError(404, message) from None
    try:
        with loaded, loaded.init_execution_context() as context:
            data = struct.pack(f"<{PIXELS}f", *pixels)
            # No `with` for the input: compute takes it (an `own` handle), it is the host's then.
            input_tensor = tensor.Tensor([1, PIXELS], tensor.TensorType.FP32, data)
            outputs = context.compute([(INPUT_NAME, input_tensor)])
            try:
                return logits_of(reference, outputs)
            finally:
                for _, output in outputs:
                    output.__exit__(None, None, None)
    except Err as e:
        code, text = nn_error(e)
        status = 404 if code == errors.ErrorCode.NOT_FOUND else 500
        raise HttpError(status, f"inference failed: {text}") from None


def logits_of(reference: str, outputs: list) -> list:
    """The f32 values of output `logits`, else of the first output (the model has one)."""
    if not outputs:
        raise HttpError(500, f"model {reference} gave no output")
    output = next((t for name, t in outputs if name == OUTPUT_NAME), outputs[0][1])
    if output.ty() != tensor.TensorType.FP32:
        raise HttpError(500, f"model {reference} gave {output.ty().name} output, not FP32")
    raw = output.data()
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))


def nn_error(e: Err) -> tuple:
    """The code and a description of a failed wasi-nn call, whose payload is an `errors.error`
    resource (dropped here)."""
    error = e.value
    try:
        with error:
            code, data = error.code(), error.data()
    except Exception:  # noqa: BLE001 - not a wasi-nn error resource after all
        return None, str(error)
    name = code.name.lower().replace("_", "-")
    return code, f"{name}: {data}" if data else name


def softmax(logits: list) -> list:
    """As the Rust SDK's nn::softmax: max subtracted first, evenly spread if that is not finite."""
    top = max(logits)
    if not math.isfinite(top):
        hits = max(1, sum(1 for x in logits if x == top))
        return [1.0 / hits if x == top else 0.0 for x in logits]
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [x / total for x in exps]


def header(request: IncomingRequest, name: str) -> str:
    with request.headers() as fields:
        values = fields.get(name)
    return values[0].decode("latin-1") if values else ""


def first(query: dict, key: str):
    values = query.get(key)
    return values[0] if values and values[0] else None


def read_body(request: IncomingRequest) -> bytes:
    """The whole request body, at most MAX_BODY_BYTES (else 413)."""
    chunks, size = [], 0
    # The stream is a child of the body: it must be dropped first, hence the nesting.
    with request.consume() as body, body.stream() as stream:
        while True:
            try:
                chunk = stream.blocking_read(READ_CHUNK)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise HttpError(400, "cannot read the request body") from None
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HttpError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def respond(response_out: ResponseOutparam, status: int, value: dict, headers: list) -> None:
    data = json.dumps(value, separators=(",", ":")).encode()
    fields = Fields.from_list(
        [("content-type", b"application/json"), ("content-length", str(len(data)).encode())]
        + headers
    )
    response = OutgoingResponse(fields)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    # The output stream is a child of the body and must be dropped before the body is finished.
    with body.write() as stream:
        for at in range(0, len(data), WRITE_CHUNK):
            stream.blocking_write_and_flush(data[at : at + WRITE_CHUNK])
    OutgoingBody.finish(body, None)


def millis(seconds: float) -> float:
    return round(seconds * 1e3, 3)
