#!/usr/bin/env python3
"""Train the `digits` model of the example app guests/digits: a tiny MLP on scikit-learn's 8x8
hand-written digits, exported to ONNX (Gemm/Relu only, so ONNX Runtime and tract agree).

    .edgenn/venv/bin/python scripts/models/train_digits.py      # ~1 min on 2 cores

Writes guests/digits/model/{digits.onnx,PROVENANCE.md} and guests/digits/testdata/golden.json
(inputs and expected outputs for the guest's unit tests: the guest's pre-processing must give
the same 8x8 pixels as `canvas_to_pixels` below).

Model: input `pixels` f32 [1,64] (8x8 row-major, the data set's 0..16 scale), output `logits`
f32 [1,10] (no softmax). The 1/16 input scaling is folded into the first layer's weights.

Data: `sklearn.datasets.load_digits` (ships inside scikit-learn; a copy of the test set of the
UCI "Optical Recognition of Handwritten Digits" data set). Stratified 80/20 train/test split
with a fixed seed; the test split is never trained on. The training set is used as is, plus
augmented copies that go through exactly the guest's image pre-processing (upsampled to 32x32,
random rotation, shear, aspect, stroke thickness; then crop, centre, area-average to 8x8), so
that canvas drawings, which reach the model through that pre-processing, look like training
data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import scipy.ndimage as ndi
import sklearn
import torch
import tract
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "guests" / "digits"
ONNX_PATH = APP / "model" / "digits.onnx"
PROVENANCE = APP / "model" / "PROVENANCE.md"
STROKES = APP / "testdata" / "strokes.json"
GOLDEN = APP / "testdata" / "golden.json"
GOLDEN_PNGS = APP / "testdata"

HP = {
    "seed": 7,
    "test_size": 0.2,
    "hidden": [128, 64],
    "augment_copies": 12,
    "epochs": 40,
    "batch": 128,
    "lr": 0.003,
    "weight_decay": 0.0001,
    "threads": 1,
}

# --- the guest's pre-processing (guests/digits/src/preprocess.rs must match) ------------------

MIN_CONTRAST = 64.0  # ink must differ from the background by this much (0..255) somewhere
BBOX_THRESHOLD = 0.25  # a pixel belongs to the digit's bounding box at this fraction of max ink
GRID = 32  # the data set's digits were 32x32 bitmaps, counted in 4x4 blocks
MIN_STROKE = 4.0  # strokes thinner than this (in grid pixels) are thickened (data set median ~4.8)
MAX_THICKEN = 3  # at most this many 3x3 dilations


class Blank(Exception):
    pass


def ink_of(gray: np.ndarray) -> np.ndarray:
    """Ink in 0..1 (1 = the strongest ink) from a grey image (H, W) in 0..255: the background is
    the mean of the outermost ring of pixels; ink is how far a pixel is from it, towards the
    opposite side (dark ink on light paper or light ink on a dark canvas)."""
    g = gray.astype(np.float64)
    if min(g.shape) > 1:
        ring = np.concatenate([g[0, :], g[-1, :], g[1:-1, 0], g[1:-1, -1]])
    else:
        ring = g.ravel()
    bg = float(ring.mean())
    ink = np.maximum(bg - g, 0) if bg >= 127.5 else np.maximum(g - bg, 0)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise Blank("no ink")
    return ink / peak


def area_weights(lo: float, cell: float, n_cells: int, n_pixels: int) -> np.ndarray:
    """(n_cells, n_pixels): how much of pixel p ([p, p+1)) lies in cell i ([lo+i*cell, lo+(i+1)*cell))."""
    edges = lo + cell * np.arange(n_cells + 1, dtype=np.float64)
    p = np.arange(n_pixels, dtype=np.float64)
    overlap = np.minimum(p[None, :] + 1, edges[1:, None]) - np.maximum(p[None, :], edges[:-1, None])
    return np.clip(overlap, 0, None)


def to_grid(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink's bounding box, centre it in a square (side = the box's longer side: the
    data set's digits fill the whole height), area-average the square to GRID x GRID."""
    ys, xs = np.nonzero(ink > BBOX_THRESHOLD)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = float(max(y1 - y0, x1 - x0))
    cell = side / GRID
    wy = area_weights((y0 + y1) / 2 - side / 2, cell, GRID, ink.shape[0])
    wx = area_weights((x0 + x1) / 2 - side / 2, cell, GRID, ink.shape[1])
    return wy @ ink @ wx.T / (cell * cell)


def stroke_width(bitmap: np.ndarray) -> float:
    """2 x area / perimeter: the width of a long stroke."""
    pad = np.pad(bitmap, 1)
    perimeter = int((pad[1:, :] != pad[:-1, :]).sum() + (pad[:, 1:] != pad[:, :-1]).sum())
    return 2.0 * int(bitmap.sum()) / max(perimeter, 1)


def dilate(bitmap: np.ndarray) -> np.ndarray:
    pad = np.pad(bitmap, 1)
    h, w = bitmap.shape
    out = np.zeros_like(bitmap)
    for dy in range(3):
        for dx in range(3):
            out |= pad[dy : dy + h, dx : dx + w]
    return out


def ink_to_pixels(ink: np.ndarray) -> np.ndarray:
    """As the data set was made: a 32x32 bitmap of the digit (on where the area-averaged ink is
    at least half its maximum), strokes thickened to the data set's, on-pixels counted in 4x4
    blocks: 8x8 integers 0..16."""
    grid = to_grid(ink)
    bitmap = grid >= 0.5 * grid.max()
    for _ in range(MAX_THICKEN):
        if stroke_width(bitmap) >= MIN_STROKE:
            break
        bitmap = dilate(bitmap)
    return bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.float32).ravel()


def canvas_to_pixels(gray: np.ndarray) -> np.ndarray:
    return ink_to_pixels(ink_of(gray))


# --- strokes (hand-made pen drawings, also drawn by the browser test) -------------------------


def render_strokes(strokes, size=280, width_frac=None, dark_on_light=True, scale=1.0, dx=0.0, dy=0.0):
    spec = json.loads(STROKES.read_text())
    width = max(1, round((width_frac or spec["stroke_width"]) * size))
    bg, fg = (255, 0) if dark_on_light else (0, 255)
    # Drawn at 4x and reduced: anti-aliased like a browser canvas.
    big = 4 * size
    img = Image.new("L", (big, big), bg)
    d = ImageDraw.Draw(img)
    w = 4 * width
    for stroke in strokes:
        pts = [((0.5 + (x - 0.5) * scale + dx) * big, (0.5 + (y - 0.5) * scale + dy) * big) for x, y in stroke]
        d.line(pts, fill=fg, width=w, joint="curve")
        for x, y in pts:
            d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=fg)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX))


# --- augmentation -------------------------------------------------------------------------------


def augment(img8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of an 8x8 digit (0..16), through the guest's pre-processing."""
    up = upsample(img8)
    canvas = np.zeros((64, 64))
    canvas[16:48, 16:48] = up
    angle = math.radians(rng.uniform(-14, 14))
    shear = rng.uniform(-0.25, 0.25)
    sx, sy = rng.uniform(0.7, 1.25), rng.uniform(0.85, 1.15)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    fwd = rot @ np.array([[1, shear], [0, 1]]) @ np.diag([sy, sx])  # (row, col) coordinates
    inv = np.linalg.inv(fwd)
    centre = np.array([32.0, 32.0])
    warped = ndi.affine_transform(canvas, inv, offset=centre - inv @ centre, order=1)
    # Stroke thickness (the pre-processing thickens thin strokes again, up to MIN_STROKE).
    r = rng.random()
    if r < 0.2:
        warped = ndi.grey_dilation(warped, size=(3, 3))
    elif r < 0.3:
        warped = ndi.grey_dilation(warped, size=(5, 5))
    elif r < 0.45:
        warped = ndi.grey_erosion(warped, size=(2, 2))
    elif r < 0.6:
        warped = ndi.grey_erosion(warped, size=(3, 3))
    elif r < 0.7:
        warped = ndi.grey_erosion(warped, size=(4, 4))
    if warped.max() < 0.2:  # eroded away: keep the plain copy
        warped = canvas
    gray = 255 - np.clip(warped * 255 / max(warped.max(), 1e-6), 0, 255)
    return canvas_to_pixels(gray)


def build_training_set(x_train, y_train, rng):
    xs, ys = [x_train], [y_train]
    # The plain data set digits through the pipeline (centred, height filled).
    xs.append(np.stack([augment_identity(x) for x in x_train]))
    ys.append(y_train)
    for _ in range(HP["augment_copies"]):
        xs.append(np.stack([augment(x.reshape(8, 8), rng) for x in x_train]))
        ys.append(y_train)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def upsample(img8: np.ndarray) -> np.ndarray:
    """A smooth 32x32 image (0..1) whose 4x4 block counts at threshold 0.5 are close to the
    8x8 digit (mean |error| ~0.8 of 16): an approximation of the data set's lost bitmaps."""
    return ndi.gaussian_filter(np.kron(img8 / 16.0, np.ones((4, 4))), 1.4)


def augment_identity(x):
    up = upsample(x.reshape(8, 8))
    return canvas_to_pixels(255 - np.clip(up / up.max(), 0, 1) * 255)


# --- model ----------------------------------------------------------------------------------------


class Mlp(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        layers, width = [], 64
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 10))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, pixels):
        return self.net(pixels)


def train(x, y):
    torch.manual_seed(HP["seed"])
    model = Mlp(HP["hidden"])
    opt = torch.optim.AdamW(model.parameters(), lr=HP["lr"], weight_decay=HP["weight_decay"])
    steps_per_epoch = math.ceil(len(x) / HP["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=HP["lr"], total_steps=HP["epochs"] * steps_per_epoch)
    xt, yt = torch.from_numpy(x / 16.0).float(), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(HP["seed"])
    for epoch in range(HP["epochs"]):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), HP["batch"]):
            idx = perm[i : i + HP["batch"]]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 10 == 9 or epoch == HP["epochs"] - 1:
            print(f"epoch {epoch + 1}: loss {total / len(xt):.4f}", flush=True)
    model.eval()
    # Fold the 1/16 input scaling into the first layer: the graph takes the 0..16 scale.
    with torch.no_grad():
        model.net[0].weight /= 16.0
    return model


def predict(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def main():
    started = time.time()
    torch.set_num_threads(HP["threads"])
    rng = np.random.default_rng(HP["seed"])
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HP["test_size"], stratify=y, random_state=HP["seed"]
    )
    x_aug, y_aug = build_training_set(x_train, y_train, rng)
    print(f"training on {len(x_aug)} examples ({len(x_train)} data set digits + copies), test {len(x_test)}")
    model = train(x_aug, y_aug)

    test_acc = float((predict(model, x_test).argmax(1) == y_test).mean())
    test_rng = np.random.default_rng(HP["seed"] + 1)
    x_test_aug = np.stack([augment(v.reshape(8, 8), test_rng) for v in x_test])
    test_aug_acc = float((predict(model, x_test_aug).argmax(1) == y_test).mean())
    train_acc = float((predict(model, x_train).argmax(1) == y_train).mean())
    print(f"test accuracy {test_acc:.4f} (augmented test copies {test_aug_acc:.4f}), train {train_acc:.4f}")

    # Hand-made strokes, rendered like a canvas drawing, in several sizes/places/polarities.
    spec = json.loads(STROKES.read_text())
    stroke_rows, stroke_hits, stroke_total = [], 0, 0
    variants = [
        ("dark on light", dict()),
        ("light on dark", dict(dark_on_light=False)),
        ("small, off-centre", dict(scale=0.5, dx=-0.2, dy=0.15)),
        ("thin pen", dict(width_frac=0.04)),
        ("thick pen", dict(width_frac=0.12)),
    ]
    for digit, strokes in spec["digits"].items():
        row = [digit]
        for _, kw in variants:
            logits = predict(model, canvas_to_pixels(render_strokes(strokes, **kw))[None])[0]
            p = np.exp(logits - logits.max())
            p /= p.sum()
            guess = int(p.argmax())
            stroke_hits += guess == int(digit)
            stroke_total += 1
            row.append(f"{guess} ({p[guess]:.2f})" + ("" if guess == int(digit) else " ✗"))
        stroke_rows.append(row)
    print(f"hand-made strokes: {stroke_hits}/{stroke_total} right")
    for row in stroke_rows:
        print("  ", " | ".join(row))
    confusions = []
    for name, case in spec.get("known_confusions", {}).items():
        logits = predict(model, canvas_to_pixels(render_strokes(case["strokes"]))[None])[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        confusions.append(f"{name} (meant {case['digit']}): read as {int(p.argmax())} ({p.max():.2f})")
        print("  known confusion:", confusions[-1])

    # Export.
    ONNX_PATH.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 64),),
        str(ONNX_PATH),
        input_names=["pixels"],
        output_names=["logits"],
        opset_version=13,
        dynamo=False,
    )
    graph = onnx.load(str(ONNX_PATH))
    onnx.checker.check_model(graph)
    ops = {}
    for node in graph.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    assert set(ops) <= {"Gemm", "Relu"}, ops

    # Verify: torch vs onnxruntime vs tract on the whole test split.
    sess = ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])
    tm = tract.onnx().load(str(ONNX_PATH)).into_model().into_runnable()
    ref = predict(model, x_test)
    ort_out = np.concatenate([sess.run(["logits"], {"pixels": v[None]})[0] for v in x_test])
    tract_out = np.concatenate([tm.run([v[None]])[0].to_numpy() for v in x_test])
    ort_diff = float(np.abs(ort_out - ref).max())
    tract_diff = float(np.abs(tract_out - ort_out).max())
    ort_agree = int((ort_out.argmax(1) == ref.argmax(1)).sum())
    tract_agree = int((tract_out.argmax(1) == ort_out.argmax(1)).sum())
    print(f"onnxruntime vs torch: max |diff| {ort_diff:.2e}, argmax {ort_agree}/{len(x_test)}")
    print(f"tract vs onnxruntime: max |diff| {tract_diff:.2e}, argmax {tract_agree}/{len(x_test)}")
    assert ort_diff < 1e-4 and tract_diff < 1e-4
    assert ort_agree == tract_agree == len(x_test)

    write_golden(model, spec)
    sha = hashlib.sha256(ONNX_PATH.read_bytes()).hexdigest()
    write_provenance(
        sha=sha,
        size=ONNX_PATH.stat().st_size,
        ops=ops,
        params=sum(p.numel() for p in model.parameters()),
        n_train=len(x_train),
        n_aug=len(x_aug),
        n_test=len(x_test),
        test_acc=test_acc,
        test_aug_acc=test_aug_acc,
        train_acc=train_acc,
        stroke_rows=stroke_rows,
        variants=[v[0] for v in variants],
        stroke_hits=stroke_hits,
        stroke_total=stroke_total,
        confusions=confusions,
        ort_diff=ort_diff,
        tract_diff=tract_diff,
        seconds=time.time() - started,
    )
    print(f"wrote {ONNX_PATH.relative_to(ROOT)} ({ONNX_PATH.stat().st_size} bytes, sha256 {sha})")


def write_golden(model, spec):
    """PNG drawings plus the 8x8 pixels this script's pre-processing makes of them and the
    expected digit: the guest's unit tests check its pre-processing against these."""
    cases = []
    for name, digit, kw in [
        ("seven-dark-on-light.png", "7", dict()),
        ("four-light-on-dark.png", "4", dict(dark_on_light=False, scale=0.6, dx=0.12)),
        ("one-small.png", "1", dict(scale=0.35, dx=-0.25, dy=-0.2, width_frac=0.05)),
    ]:
        gray = render_strokes(spec["digits"][digit], size=140, **kw)
        Image.fromarray(gray, mode="L").save(GOLDEN_PNGS / name, optimize=True)
        # Re-read: what the guest gets is the PNG.
        gray = np.asarray(Image.open(GOLDEN_PNGS / name).convert("L"))
        pixels = canvas_to_pixels(gray)
        logits = predict(model, pixels[None])[0]
        assert int(logits.argmax()) == int(digit), (name, logits)
        cases.append({"file": name, "digit": int(digit), "pixels": [round(float(v), 4) for v in pixels]})
    lines = [
        "{",
        '  "_comment": "Made by scripts/models/train_digits.py: PNG drawings, the 8x8 pixels (0..16, row-major) its pre-processing gives, and the digit the model predicts. The guest\'s pre-processing must give the same pixels.",',
        '  "cases": [',
    ]
    for i, case in enumerate(cases):
        pixels = ", ".join(f"{v:g}" for v in case["pixels"])
        comma = "," if i < len(cases) - 1 else ""
        lines.append(f'    {{"file": "{case["file"]}", "digit": {case["digit"]}, "pixels": [{pixels}]}}{comma}')
    lines += ["  ]", "}"]
    GOLDEN.write_text("\n".join(lines) + "\n")


def write_provenance(**r):
    versions = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "tract": tract.version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "pillow": Image.__version__,
    }
    ops = ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items()))
    hp = "\n".join(f"| {k} | {v} |" for k, v in HP.items())
    header = "| digit | " + " | ".join(r["variants"]) + " |"
    sep = "|" + " --- |" * (len(r["variants"]) + 1)
    rows = "\n".join("| " + " | ".join(row) + " |" for row in r["stroke_rows"])
    PROVENANCE.write_text(f"""# digits: provenance

The model of the example app `guests/digits`: a small multi-layer perceptron that reads a hand-written digit as 8x8 pixels and answers which digit it is. Trained from scratch by `scripts/models/train_digits.py` (this file is written by that script).

## Data and licence

- scikit-learn's built-in digits data set (`sklearn.datasets.load_digits`), shipped inside the PyPI package `scikit-learn` {versions["scikit-learn"]} (`sklearn/datasets/data/digits.csv.gz`; package licence BSD-3-Clause). Its description (`sklearn/datasets/descr/digits.rst`) says it is a copy of the test set of the UCI ML hand-written digits data set ("Optical Recognition of Handwritten Digits", E. Alpaydin and C. Kaynak, 1998): 1797 digits written by 13 people, 32x32 bitmaps counted in 4x4 blocks, giving 8x8 images of integers 0..16.
- Licence of the data: the UCI Machine Learning Repository distributes that data set under Creative Commons Attribution 4.0 International (CC BY 4.0). The scikit-learn description itself states no licence. Attribution: Alpaydin, E. & Kaynak, C. (1998), Optical Recognition of Handwritten Digits, UCI Machine Learning Repository.
- The weights are derived from that data only; nothing else was downloaded.

## Model

`pixels` f32 [1,64] (8x8 row-major, 0..16 as in the data set) -> Linear 64->{HP["hidden"][0]} -> ReLU -> Linear {HP["hidden"][0]}->{HP["hidden"][1]} -> ReLU -> Linear {HP["hidden"][1]}->10 -> `logits` f32 [1,10] (no softmax; index = digit). {r["params"]} parameters. The 1/16 input scaling used in training is folded into the first layer's weights.

Training: stratified split of the 1797 digits into {r["n_train"]} for training and {r["n_test"]} for testing (seed {HP["seed"]}). The training digits are used as they are, once more through the guest's pre-processing, and in {HP["augment_copies"]} augmented copies (upsampled to 32x32, random rotation +-14 degrees, shear, width 0.7-1.25x, height 0.85-1.15x, thinner or thicker strokes, then the guest's pre-processing): {r["n_aug"]} examples. AdamW with a one-cycle schedule, fixed seed, {HP["threads"]} torch thread(s).

| hyper-parameter | value |
| --- | --- |
{hp}

## Pre-processing (the guest, `guests/digits/src/preprocess.rs`; `canvas_to_pixels` in the script)

Grey image -> background = mean of the outermost ring of pixels -> ink = distance from the background towards the other side (dark ink on light, or light ink on dark), divided by its maximum (less than {MIN_CONTRAST:.0f}/255 anywhere: no ink, 422) -> bounding box of the pixels above {BBOX_THRESHOLD} -> a square of the box's longer side centred on it (the data set's digits fill the whole height) -> exact area average down to {GRID}x{GRID} -> bitmap: on where at least half the maximum -> while the stroke width (2 x area / perimeter) is under {MIN_STROKE} grid pixels, at most {MAX_THICKEN} times: 3x3 dilation (pen strokes are thinner than the data set's) -> on-pixels counted in 4x4 blocks: 8x8 integers 0..16, as the data set was made. JSON clients send the 64 pixels directly.

## Results

- **test accuracy: {r["test_acc"] * 100:.2f}%** on the {r["n_test"]} held-out data set digits (train {r["train_acc"] * 100:.2f}%)
- augmented test copies (the held-out digits distorted as in training, through the pre-processing): {r["test_aug_acc"] * 100:.2f}%
- hand-made pen strokes (`guests/digits/testdata/strokes.json`, rendered anti-aliased at 280x280 and pre-processed as above): {r["stroke_hits"]}/{r["stroke_total"]} right; predicted digit (probability):

{header}
{sep}
{rows}

- known confusions (`known_confusions` in the same file, dark on light): {"; ".join(r["confusions"]) or "none"}. The data set has narrow 3s that look like a 1 with a long flag; a plain stroke reads as 1.
- ONNX Runtime {versions["onnxruntime"]} vs torch on the test split: max |logit diff| {r["ort_diff"]:.1e}, same argmax on all; tract {versions["tract"]} (PyPI `tract`, the version of the gateway's `tract-onnx`) vs ONNX Runtime: max |logit diff| {r["tract_diff"]:.1e}, same argmax on all.
- took {r["seconds"]:.0f} s (data, augmentation, training, export, checks) on a shared 2-core machine.

## Graph

- file `digits.onnx`: {r["size"]} bytes, sha256 `{r["sha"]}`
- opset 13 (`torch.onnx.export(dynamo=False)`); input `pixels` f32 [1,64], output `logits` f32 [1,10]; static shapes
- ops (count): {ops}

## Re-make

```sh
.edgenn/venv/bin/pip install -r scripts/models/requirements.txt
.edgenn/venv/bin/python scripts/models/train_digits.py     # or: scripts/models/remake.sh digits
```

Tool versions: {", ".join(f"{k} {v}" for k, v in versions.items())}. Reproducible on the same versions and CPU type (floating-point summation order can differ between CPU types).
""")


if __name__ == "__main__":
    sys.exit(main())
