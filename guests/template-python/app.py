"""my-app: the starting point for an edgenn app in Python. Copy this directory (or let
`edgenn new my-app --lang python` do it), then replace `parse_input` and `answer` with your own
pre- and post-processing.

As it is, it runs any model with one input on numbers it is given, and answers the `k` highest
outputs as probabilities (softmax). With the manifest's default config it runs the shared
`wordlm` model (32 token ids in, next-token logits out), so it works against the gateway's
bundled models out of the box. It answers as the Rust template (guests/template) does:

    GET  /v1/my-app                          what the app runs (no model call)
    GET  /v1/my-app?input=12,7,40&k=3        run the model on these numbers
    POST /v1/my-app  {"input": [12, 7, 40], "k": 3}

Inputs shorter than the model's input are left-padded with zeros (for wordlm: `<pad>`).
Answer: `{"model":"wordlm","outputs":6000,"top":[{"index":5,"probability":0.12}, ...]}`.
Errors are `{"error": message}`: not GET or POST 405, a malformed body, number or `k`, or more
values than the input takes 400, a model that cannot be loaded 404, a failed inference or a bad
[config] 500.

How it works: componentize-py builds this module into a WebAssembly component for the
`edgenn:app/app` world (wit/ in the edgenn checkout; see README.md), which exports
`wasi:http/incoming-handler`. The gateway starts a fresh instance for every request and calls
`IncomingHandler.handle`; the app's [config] is its environment (EDGENN_CONFIG_<KEY>), models
are loaded by name through `wasi:nn` and their bytes stay in the gateway. An exception that
escapes `handle` would trap the instance: every error is answered instead.
"""

import heapq
import json
import math
import os
import re
import struct
import sys
import traceback
from urllib.parse import parse_qsl

# componentize-py resolves imports when it builds the component (a module first imported inside
# a function at run time may not be there), so everything used is imported here, at the top.
from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import graph, tensor
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

DEFAULT_MODEL = "wordlm"
# Refuse larger inputs early: the model could not take them anyway.
MAX_VALUES = 1 << 20
DEFAULT_K = 5
MAX_K = 100
USAGE = 'GET ?input=1,2,3&k=5 or POST {"input": [1, 2, 3], "k": 5}'
BODY_HINT = '{"input": [1, 2, 3], "k": 5}'
# The element types [config] input_type may name, as wasi:nn types and struct formats.
INPUT_TYPES = {
    "f32": (tensor.TensorType.FP32, "f"),
    "i32": (tensor.TensorType.I32, "i"),
    "i64": (tensor.TensorType.I64, "q"),
}
# The numbers Rust's str::parse::<f64>() reads, so both templates accept the same queries
# (Python's float() would also take "1_000").
NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.IGNORECASE,
)
UNSIGNED = re.compile(r"\+?[0-9]+")
# blocking-write-and-flush takes at most 4096 bytes per call (wasi:io/streams).
WRITE_CHUNK = 4096
READ_CHUNK = 64 * 1024


class HttpError(Exception):
    """An error answer: `status` with the body `{"error": message}`."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class Settings:
    """The app's settings, from the manifest's [config] and the request's ?model=/?backend=."""

    def __init__(self, query: list):
        # As the Rust SDK's model_choice: ?model=, else [config] model, else wordlm; on
        # ?backend=, else [config] backend, else the model's default backend.
        self.model = pick(first(query, "model"), config("model"), DEFAULT_MODEL)
        self.backend = pick(first(query, "backend"), config("backend"))
        # What load-by-name takes; the host resolves "name@backend".
        self.reference = f"{self.model}@{self.backend}" if self.backend is not None else self.model
        self.input_type = config("input_type", "i32")
        if self.input_type not in INPUT_TYPES:
            raise ValueError(f"input_type {json.dumps(self.input_type)} is not f32, i32 or i64")
        shape = config("input_shape", "1,32")
        dims = [d.strip() for d in shape.split(",")]
        if not all(UNSIGNED.fullmatch(d) and int(d) > 0 for d in dims):
            message = f'input_shape {json.dumps(shape)} must be positive integers like "1,32"'
            raise ValueError(message)
        self.input_shape = [int(d) for d in dims]


class IncomingHandler(exports.IncomingHandler):
    """The exported `wasi:http/incoming-handler`: one call per request, in a fresh instance."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, body, headers = 200, handle_request(request), []
        except HttpError as e:
            status, body, headers = e.status, {"error": e.message}, e.headers
        except Exception as e:  # noqa: BLE001 - a bug must still become a JSON answer, not a trap
            traceback.print_exc(file=sys.stderr)  # for the gateway's log
            status, body, headers = 500, {"error": f"internal error: {type(e).__name__}: {e}"}, []
        respond(response_out, status, body, headers)


def handle_request(request: IncomingRequest) -> dict:
    query = parse_qsl((request.path_with_query() or "").partition("?")[2], keep_blank_values=True)
    try:
        settings = Settings(query)
    except ValueError as e:
        # Configuration errors are the deployer's, not the client's: 500.
        raise HttpError(500, f"app configuration: {e}") from None
    method = request.method()
    if isinstance(method, Method_Get):
        body = {}
    elif isinstance(method, Method_Post):
        body = parse_body(read_body(request))
    else:
        raise HttpError(405, "use GET or POST", [("allow", b"GET, POST")])
    values = parse_input(query, body.get("input"))
    if values is None:
        # Nothing to run: describe the app instead (a cheap health check, no model call).
        return {
            "app": "my-app",
            "input_shape": settings.input_shape,
            "input_type": settings.input_type,
            "model": settings.reference,
            "usage": USAGE,
        }
    k = choose_k(query, body.get("k"))
    outputs = infer(settings, values)
    return answer(settings, outputs, k)


def parse_body(data: bytes) -> dict:
    """The POST body's `input` and `k` (either may be missing); an empty body is `{}`."""
    if not data.strip():
        return {}

    def no_constants(name):
        # Python's json reads NaN and Infinity, which are not JSON.
        raise ValueError(f"{name} is not valid JSON")

    def no_duplicates(pairs):
        # As serde: a field given twice is an error, where json would keep the last.
        keys = [key for key, _ in pairs]
        twice = next((key for i, key in enumerate(keys) if key in keys[:i]), None)
        if twice is not None:
            raise ValueError(f"duplicate field `{twice}`")
        return dict(pairs)

    try:
        body = json.loads(data, parse_constant=no_constants, object_pairs_hook=no_duplicates)
        if not isinstance(body, dict):
            raise ValueError("expected an object with the fields `input` and `k`")
        unknown = [key for key in body if key not in ("input", "k")]
        if unknown:
            # A typo must be a clear 400, not a silently ignored field.
            raise ValueError(f"unknown field `{unknown[0]}`, expected `input` or `k`")
        values, k = body.get("input"), body.get("k")
        if values is not None:
            values = numbers(values)
        # bool is an int in Python; JSON true is not a number.
        if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and k >= 0):
            raise ValueError("`k` must be a non-negative integer")
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HttpError(400, f"the body must be JSON like {BODY_HINT}: {e}") from None
    return {"input": values, "k": k}


def numbers(values) -> list:
    """The JSON list `values` as floats: numbers only, and none too large for a float."""
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError("`input` must be a list of numbers")
    try:
        floats = [float(v) for v in values]  # OverflowError: an integer beyond the float range
    except OverflowError:
        floats = [math.inf]
    if not all(math.isfinite(v) for v in floats):
        raise ValueError("number out of range")  # 1e400 reads as inf
    return floats


def parse_input(query: list, from_body):
    """The numbers to run the model on: the JSON body's `input`, else `?input=1,2,3`, else
    None."""
    if from_body is not None:
        return from_body
    text = first(query, "input")
    if text is None:
        return None
    values = []
    for piece in text.split(","):
        if not piece.strip():
            continue
        if not NUMBER.fullmatch(piece.strip()):
            raise HttpError(400, f"input value {json.dumps(piece)} is not a number")
        values.append(float(piece))
    return values


def choose_k(query: list, from_body) -> int:
    """How many outputs to answer: the body's `k`, else `?k=`, else DEFAULT_K."""
    if from_body is not None:
        k = from_body
    else:
        text = first(query, "k")
        if text is None:
            return DEFAULT_K
        k = int(text) if UNSIGNED.fullmatch(text.strip()) else 0
    if not 1 <= k <= MAX_K:
        raise HttpError(400, f"k must be an integer from 1 to {MAX_K}")
    return k


def infer(settings: Settings, values: list) -> list:
    """Builds the input tensor (left-padded with zeros to the configured shape) and runs the
    model: the f32 values of its first output."""
    shape = settings.input_shape
    size = math.prod(shape)
    if len(values) > min(size, MAX_VALUES):
        message = f"input tensor 0: {len(values)} values for input shape {shape} (at most {size})"
        raise HttpError(400, message)
    values = [0.0] * (size - len(values)) + values
    ty, data = encode(settings.input_type, values)

    # Loading is cheap: the gateway keeps compiled models cached across requests and apps.
    try:
        loaded = graph.load_by_name(settings.reference)
    except Err as e:
        # A model that cannot be loaded is the client's 404 (no such model or backend, or one
        # the app does not declare); the host's error says which.
        message = f"cannot load model {json.dumps(settings.reference)}: {nn_error(e)}"
        raise HttpError(404, message) from None
    # Every resource is dropped as soon as it is done with (the `with` blocks and the outputs'
    # `__exit__`): the host holds the tensors' memory, counted against the app's memory limit,
    # until they are.
    try:
        with loaded, loaded.init_execution_context() as context:
            # No `with` for the input: compute takes it (an `own` handle), it is the host's then.
            # It is named by its index, as the Rust SDK names its inputs: edgenn takes a name
            # that is not one of the model's inputs but a number as an index (WIT has no call to
            # list the names).
            outputs = context.compute([("0", tensor.Tensor(shape, ty, data))])
            try:
                return first_output(outputs)
            finally:
                for _, output in outputs:
                    output.__exit__(None, None, None)
    except Err as e:
        raise HttpError(500, f"inference failed: {nn_error(e)}") from None


def encode(input_type: str, values: list) -> tuple:
    """The values as little-endian bytes of `input_type`, converted as Rust's `as` does:
    integers truncated toward zero and saturated, NaN 0, floats too large for f32 infinite."""
    ty, fmt = INPUT_TYPES[input_type]
    if fmt == "f":
        try:
            return ty, struct.pack(f"<{len(values)}f", *values)
        except OverflowError:  # a value rounds to beyond the largest f32: one at a time
            return ty, b"".join(pack_f32(v) for v in values)
    bits = 32 if fmt == "i" else 64
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    ints = [0 if math.isnan(v) else int(max(low, min(high, v))) for v in values]
    return ty, struct.pack(f"<{len(ints)}{fmt}", *ints)


def pack_f32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, value))


def first_output(outputs: list) -> list:
    if not outputs:
        raise HttpError(500, "inference failed: the model gave no output")
    name, output = outputs[0]
    if output.ty() != tensor.TensorType.FP32:
        raise HttpError(500, f"inference failed: output {json.dumps(name)} is not f32")
    raw = output.data()
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))


def answer(settings: Settings, outputs: list, k: int) -> dict:
    """Post-processing: the `k` highest outputs as softmax probabilities, best first."""
    probabilities = softmax(outputs)
    # Ties go to the lower index and NaN ranks last, as the Rust SDK's nn::top_k.
    best = heapq.nsmallest(
        k,
        range(len(probabilities)),
        key=lambda i: (math.inf if math.isnan(probabilities[i]) else -probabilities[i], i),
    )
    top = [{"index": i, "probability": as_f32(probabilities[i])} for i in best]
    return {"model": settings.model, "outputs": len(outputs), "top": top}


def softmax(logits: list) -> list:
    """As the Rust SDK's nn::softmax: max subtracted first, evenly spread if that is not finite."""
    top = max((x for x in logits if not math.isnan(x)), default=-math.inf)
    if not math.isfinite(top):
        hits = max(1, sum(1 for x in logits if x == top))
        return [1.0 / hits if x == top else 0.0 for x in logits]
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [x / total for x in exps]


def as_f32(value: float):
    """`value` as the Rust template prints its f32 probabilities: the shortest decimal that
    reads back as the same f32 (0.12, not 0.11999999731779099); NaN as null. The softmax here is
    computed in double precision, so the last digit may differ from the Rust template's."""
    if math.isnan(value):
        return None
    (rounded,) = struct.unpack("<f", struct.pack("<f", value))
    for digits in range(1, 10):
        short = float(f"{rounded:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", short))[0] == rounded:
            return short
    return rounded


def config(key: str, default=None):
    """The app's [config] value `key`: the gateway passes it as EDGENN_CONFIG_<KEY>."""
    return os.environ.get("EDGENN_CONFIG_" + key.upper().replace("-", "_"), default)


def first(query: list, key: str):
    """The first value of query parameter `key` ("" for `?key=` or `?key`), else None."""
    return next((value for name, value in query if name == key), None)


def pick(*values):
    """The first of `values` that is not None."""
    return next((v for v in values if v is not None), None)


def read_body(request: IncomingRequest) -> bytes:
    """The whole request body. The gateway refuses bodies over the manifest's max_body_bytes
    before the app runs, so this needs no limit of its own."""
    chunks = []
    # The stream is a child of the body: it must be dropped first, hence the nesting.
    with request.consume() as body, body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(READ_CHUNK))
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise HttpError(400, "cannot read the request body") from None
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


def nn_error(e: Err) -> str:
    """A description of a failed wasi-nn call, whose payload is an `errors.error` resource
    (dropped here)."""
    error = e.value
    try:
        with error:
            code, data = error.code(), error.data()
    except Exception:  # noqa: BLE001 - not a wasi-nn error resource after all
        return str(error)
    name = code.name.lower().replace("_", "-")
    return f"{name}: {data}" if data else name
