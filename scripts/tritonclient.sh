#!/usr/bin/env bash
# Installs Triton's own Python client (tritonclient[http], PyPI) with numpy and Pillow into a
# project-local venv, .edgenn/tritonclient/, idempotently: a second run takes well under a
# second and downloads nothing. tests/oip.rs drives the gateway's /v2 API with it.
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC="tritonclient[http]==2.73.0 numpy==2.4.6 pillow==13.0.0"
VENV=.edgenn/tritonclient
# Tests run this at once from several threads (each of tests/oip.rs's tests installs what it
# uses): on a fresh clone two installs into one venv collide, so the first takes a lock and the
# others wait for it, then find the venv installed.
mkdir -p .edgenn
exec 9>.edgenn/tritonclient.lock
flock 9
if [[ "$(cat "$VENV/.installed" 2>/dev/null)" != "$SPEC" || ! -x "$VENV/bin/python" ]]; then
  echo "==> installing $SPEC (from PyPI) into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # the spec is several requirements
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $SPEC
  echo "$SPEC" >"$VENV/.installed"
fi
