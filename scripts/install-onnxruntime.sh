#!/usr/bin/env bash
# Installs the ONNX Runtime C library the `ort` backend loads at run time, taken from PyPI's
# onnxruntime wheel (the only registry-hosted build), into .edgenn/onnxruntime/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
DEST=.edgenn/onnxruntime
LIB="$DEST/libonnxruntime.so.$VERSION"
if [[ -f "$LIB" ]]; then
  exit 0
fi
echo "==> installing ONNX Runtime $VERSION (from PyPI's onnxruntime wheel) into $DEST"
mkdir -p "$DEST/wheel"
python3 -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime==$VERSION" -d "$DEST/wheel"
python3 - "$DEST" "$VERSION" <<'PY'
import glob, sys, zipfile, os
dest, version = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(dest, "wheel", f"onnxruntime-{version}-*.whl"))[0]
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
tmp = os.path.join(dest, f".libonnxruntime.so.{version}.tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(dest, f"libonnxruntime.so.{version}"))
PY
rm -rf "$DEST/wheel"
echo "    $LIB"
