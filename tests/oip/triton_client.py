"""Triton's own Python client (tritonclient.http) against a running edgenn: health, metadata,
a real photo classified with binary and with JSON tensors and checked against what the
gateway's /v1/classify app answers for the same photo, wordlm with INT32 tokens, and bad
requests answered with the server's reason. Run by tests/oip.rs with the venv of
scripts/tritonclient.sh:

    python triton_client.py HOST:PORT REPO_DIR

Prints one line per check; exits non-zero at the first failure.
"""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as triton

from checks import check, refused, softmax  # tests/oip/checks.py, beside this script

URL, REPO = sys.argv[1], sys.argv[2]
PHOTO = f"{REPO}/tests/data/chelsea.png"
# The DESIGN.md pre-processing, as the classify guest does it (its Rust reproduces this exactly).
sys.path.insert(0, f"{REPO}/scripts/models")
from imagenet_preprocess import preprocess  # noqa: E402


client = triton.InferenceServerClient(url=URL)
check(client.is_server_live(), "the server is live")
check(client.is_server_ready(), "the server is ready")
server = client.get_server_metadata()
check(server["name"] == "edgenn" and "binary_tensor_data" in server["extensions"], f"server metadata {server}")
check(client.is_model_ready("efficientnet-lite0"), "efficientnet-lite0 is ready")

metadata = client.get_model_metadata("efficientnet-lite0")
image_input, image_output = metadata["inputs"][0], metadata["outputs"][0]
check(
    metadata["platform"] == "onnx_onnxv1"
    and image_input["datatype"] == "FP32"
    and image_input["shape"] == [1, 3, 224, 224],
    f"model metadata read from the graph: {metadata}",
)

# The photo, as /v1/classify answers it.
request = urllib.request.Request(
    f"http://{URL}/v1/classify?k=5", data=open(PHOTO, "rb").read(), headers={"Content-Type": "image/png"}
)
app = json.load(urllib.request.urlopen(request))["predictions"]

x = preprocess(PHOTO)
answers = {}
for binary in (True, False):
    tensor = triton.InferInput(image_input["name"], list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = triton.InferRequestedOutput(image_output["name"], binary_data=binary)
    result = client.infer("efficientnet-lite0", [tensor], outputs=[wanted])
    logits = result.as_numpy(image_output["name"]).reshape(-1)
    check(logits.shape == (1000,), f"{'binary' if binary else 'JSON'} tensors: 1000 logits")
    answers[binary] = softmax(logits.astype(np.float64))
check(np.abs(answers[True] - answers[False]).max() < 1e-6, "binary and JSON tensors give the same answer")
probabilities = answers[True]
top = int(np.argmax(probabilities))
check(top == app[0]["index"], f"top-1 class {top} is /v1/classify's ({app[0]['label']})")
for prediction in app:
    ours = probabilities[prediction["index"]]
    check(abs(ours - prediction["probability"]) < 1e-4, f"class {prediction['index']}: {ours:.6f} vs {prediction['probability']:.6f}")

# wordlm with INT32 tokens, on both backends.
tokens = np.zeros((1, 32), dtype=np.int32)
tokens[0, -3:] = [4, 17, 9]
outputs = {}
for backend in ("ort", "tract"):
    tensor = triton.InferInput("tokens", [1, 32], "INT32")
    tensor.set_data_from_numpy(tokens)
    result = client.infer("wordlm", [tensor], parameters={"backend": backend})
    outputs[backend] = result.as_numpy(result.get_response()["outputs"][0]["name"]).reshape(-1)
    check(outputs[backend].shape == (6000,), f"wordlm on {backend}: 6000 logits")
check(np.abs(outputs["ort"] - outputs["tract"]).max() < 1e-3, "wordlm: ort and tract agree")

# Bad requests: each raises with the server's message, and the server keeps serving.
def infer_with(model, name, shape, datatype, data, **kwargs):
    tensor = triton.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(data, binary_data=kwargs.pop("binary", True))
    return client.infer(model, [tensor], **kwargs)


refused(lambda: infer_with("nope", "tokens", [1, 32], "INT32", tokens), "unknown model", "an unknown model")
refused(
    lambda: infer_with("wordlm", "tokens", [1, 32], "INT64", tokens.astype(np.int64)),
    "takes INT32",
    "a wrong datatype",
)
refused(
    lambda: infer_with("wordlm", "tokens", [1, 16], "INT32", tokens[:, :16].copy()),
    "the model takes",
    "a shape the model does not take",
)
refused(
    lambda: infer_with("wordlm", "other", [1, 32], "INT32", tokens),
    "no input",
    "an input the model does not have",
)
refused(
    lambda: infer_with("wordlm", "tokens", [1], "BYTES", np.array([b"hi"], dtype=object)),
    "BYTES",
    "a BYTES tensor",
)
refused(
    lambda: infer_with("wordlm", "tokens", [1, 32], "INT32", tokens, outputs=[triton.InferRequestedOutput("nope")]),
    "no output",
    "an output the model does not have",
)
check(client.is_server_live(), "the server is still live")
print("all checks passed")
