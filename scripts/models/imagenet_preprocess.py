"""The DESIGN.md pre-processing for efficientnet-lite0, with Pillow and numpy: the reference
that guests/classify/src/preprocess.rs reproduces exactly. Used by export_efficientnet.py (to
check the exported graph) and tests/oip/triton_client.py (a client preparing its tensor)."""

import numpy as np
from PIL import Image


def preprocess(path: str) -> np.ndarray:
    """Shorter side -> 256 (bilinear, aspect kept, other side rounded), centre crop 224 (offset
    floor((side-224)/2)), (x - 127) / 128, NCHW RGB f32."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = 256, max(1, round(h * 256 / w))
    else:
        nw, nh = max(1, round(w * 256 / h)), 256
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - 224) // 2, (nh - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[None].copy()
