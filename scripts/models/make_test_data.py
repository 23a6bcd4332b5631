#!/usr/bin/env python3
"""Make the test inputs in tests/data/ from photos that ship inside the scikit-image wheel.

Only files inside the installed wheel are used (no pooch downloads). Output is deterministic
for a given Pillow version.

    python scripts/models/make_test_data.py [--out tests/data]

Files written:
    chelsea.png       the wheel's chelsea.png, byte for byte (cat, 451x300)
    chelsea.jpg       chelsea re-encoded as baseline JPEG, quality 90
    chelsea.webp      chelsea as lossy WebP, quality 90
    coffee.jpg        the wheel's coffee.png as JPEG, quality 90 (espresso cup, 600x400)
    rocket.jpg        the wheel's rocket.jpg, byte for byte (Falcon 9 launch, 640x427)
    astronaut.jpg     the wheel's astronaut.png as JPEG, quality 90 (Eileen Collins, 512x512)
    truncated.jpg     the first half of chelsea.jpg (a broken JPEG)
    not-an-image.txt  plain text
    bomb.png          a PNG whose IHDR claims 100000 x 100000 RGB pixels (30 GB decoded) in a
                      file of a few KB; decoders must refuse it by its dimensions
"""
import argparse
import hashlib
import io
import os
import shutil
import struct
import zlib

from PIL import Image
import skimage

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def make_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A well-formed PNG header + IDAT that claims width x height 8-bit RGB.

    The IDAT holds a valid zlib stream of the first 16 scanlines (filter byte 0 + zero pixels),
    so the file is tiny; the image is short of data after those rows. A decoder that checks
    the IHDR dimensions against its limits rejects it before allocating anything.
    """
    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, RGB, no interlace
    rows = 16
    raw = bytes(rows * (1 + 3 * width))
    idat = zlib.compress(raw, 9)
    return sig + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def save_jpeg(img: Image.Image, path: str) -> None:
    img.convert("RGB").save(path, format="JPEG", quality=90, optimize=False, progressive=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    def p(name):
        return os.path.join(out, name)

    chelsea = Image.open(os.path.join(DATA, "chelsea.png")).convert("RGB")
    shutil.copyfile(os.path.join(DATA, "chelsea.png"), p("chelsea.png"))
    save_jpeg(chelsea, p("chelsea.jpg"))
    chelsea.save(p("chelsea.webp"), format="WEBP", quality=90, method=4)
    save_jpeg(Image.open(os.path.join(DATA, "coffee.png")), p("coffee.jpg"))
    shutil.copyfile(os.path.join(DATA, "rocket.jpg"), p("rocket.jpg"))
    save_jpeg(Image.open(os.path.join(DATA, "astronaut.png")), p("astronaut.jpg"))

    with open(p("chelsea.jpg"), "rb") as f:
        jpg = f.read()
    with open(p("truncated.jpg"), "wb") as f:
        f.write(jpg[: len(jpg) // 2])
    with open(p("not-an-image.txt"), "w") as f:
        f.write("This is plain text, not an image.\nedgenn test input.\n")
    with open(p("bomb.png"), "wb") as f:
        f.write(make_bomb())

    for name in sorted(os.listdir(out)):
        with open(p(name), "rb") as f:
            b = f.read()
        desc = ""
        try:
            with Image.open(io.BytesIO(b)) as im:
                desc = f"{im.format} {im.size[0]}x{im.size[1]} {im.mode}"
        except Exception as e:  # the bad inputs
            desc = f"not decodable: {type(e).__name__}"
        print(f"{name:18} {len(b):8} bytes  sha256 {hashlib.sha256(b).hexdigest()[:16]}  {desc}")


if __name__ == "__main__":
    main()
