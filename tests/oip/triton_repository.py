"""Triton's own Python client (tritonclient.http) against edgenn's model repository: the
repository index, a model added at run time (the digits model, pushed as a shared model by
tests/oip.rs with `edgenn model push`) inferred on and checked against what the gateway's
/v1/digits app answers, unloaded, loaded again; a model added through Triton's load with its
files; and the admin token asked for. Run by tests/oip.rs with the venv of
scripts/tritonclient.sh:

    python triton_repository.py HOST:PORT REPO_DIR TOKEN

tritonclient.http 2.73's `load_model(files=...)` cannot send files: it puts the bytes of
`base64.b64encode` into `json.dumps`, which raises TypeError before anything is sent. So the
load with files is posted as Triton's protocol gives it (`file:<path>` parameters, base64
strings) with urllib; every other call is the client's.

Prints one line per check; exits non-zero at the first failure.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as triton

from checks import check, refused, softmax  # tests/oip/checks.py, beside this script

URL, REPO, TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOLDEN = json.load(open(f"{REPO}/guests/digits/testdata/golden.json"))["cases"]


def index(client):
    return {entry["name"]: entry for entry in client.get_model_repository_index(headers=AUTH)}


def app_probabilities(pixels):
    request = urllib.request.Request(
        f"http://{URL}/v1/digits?backend=tract",
        data=json.dumps({"pixels": pixels}).encode(),
        headers={"Content-Type": "application/json"},
    )
    answer = json.load(urllib.request.urlopen(request))
    return answer["digit"], np.array(answer["probabilities"])


def check_digits(client, model, what):
    metadata = client.get_model_metadata(model)
    name, output = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]
    for case in GOLDEN:
        pixels = np.array(case["pixels"], dtype=np.float32).reshape(1, 64)
        tensor = triton.InferInput(name, [1, 64], "FP32")
        tensor.set_data_from_numpy(pixels)
        result = client.infer(model, [tensor])
        ours = softmax(result.as_numpy(output).reshape(-1).astype(np.float64))
        digit, reference = app_probabilities(case["pixels"])
        check(
            int(np.argmax(ours)) == digit == case["digit"]
            and np.abs(ours - reference).max() < 1e-4,
            f"{what}: {case['file']} is a {digit}, probabilities within 1e-4 of /v1/digits",
        )


client = triton.InferenceServerClient(url=URL)
models = index(client)
check(models["digits"]["state"] == "READY", f"the pushed model is in the index, ready: {models['digits']}")
check(
    models["efficientnet-lite0"]["state"] == "READY" and models["wordlm"]["state"] == "READY",
    "the models directory's models are in the index",
)
check(client.is_model_ready("digits"), "digits is ready")
check_digits(client, "digits", "digits, pushed at run time")

client.unload_model("digits", headers=AUTH)
entry = index(client)["digits"]
check(entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded", f"unloaded, still listed: {entry}")
check(not client.is_model_ready("digits"), "an unloaded model is not ready")
request = urllib.request.Request(
    f"http://{URL}/v2/repository/index", data=b'{"ready": true}', headers={"Content-Type": "application/json", **AUTH}
)
ready_only = [entry["name"] for entry in json.load(urllib.request.urlopen(request))]
check("digits" not in ready_only and "wordlm" in ready_only, f"an index of the ready models only: {ready_only}")
tensor = triton.InferInput("x", [1, 64], "FP32")
tensor.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
refused(lambda: client.infer("digits", [tensor]), "unknown model", "an inference on an unloaded model")
client.load_model("digits", headers=AUTH)
check(index(client)["digits"]["state"] == "READY", "loaded again")
check_digits(client, "digits", "digits, loaded again")

# A model added through Triton's load, with its files and a config: the same ONNX file on
# ONNX Runtime, under another name.
onnx = open(f"{REPO}/guests/digits/model/digits.onnx", "rb").read()
load = {
    "parameters": {
        "config": json.dumps({"name": "digits-ort", "backend": "onnxruntime"}),
        "file:1/model.onnx": base64.b64encode(onnx).decode(),
    }
}
request = urllib.request.Request(
    f"http://{URL}/v2/repository/models/digits-ort/load",
    data=json.dumps(load).encode(),
    headers={"Content-Type": "application/json", **AUTH},
)
check(urllib.request.urlopen(request).status == 200, "a load with files adds a model")
check(index(client)["digits-ort"]["state"] == "READY", "the added model is ready")
check_digits(client, "digits-ort", "digits-ort, added through Triton's load on ONNX Runtime")
load["parameters"]["file:1/model.onnx"] = base64.b64encode(b"not an ONNX model").decode()
request = urllib.request.Request(
    f"http://{URL}/v2/repository/models/digits-ort/load",
    data=json.dumps(load).encode(),
    headers={"Content-Type": "application/json", **AUTH},
)
try:
    urllib.request.urlopen(request)
    raise SystemExit("FAILED: a model that does not load was accepted")
except urllib.error.HTTPError as error:
    body = json.load(error)
    check(error.code == 422 and "error" in body, f"a model that does not load is refused: {error.code} {body}")
check_digits(client, "digits-ort", "digits-ort, still serving after the refused replacement")

# The repository wants the admin token; a model the repository does not know is a 404.
refused(lambda: client.get_model_repository_index(), "token", "the index without the token")
refused(lambda: client.unload_model("digits"), "token", "an unload without the token")
refused(lambda: client.load_model("nope", headers=AUTH), "unknown model", "loading a model nobody added")
check(client.is_server_live(), "the server is still live")
print("all checks passed")
