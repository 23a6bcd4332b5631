#!/usr/bin/env bash
# Sets up everything edgenn needs, idempotently (a second run takes seconds):
#   - the wasm32-wasip1 guest toolchain (Debian packages + a private std sysroot in .edgenn/)
#   - the ONNX Runtime library (from PyPI's onnxruntime wheel, into .edgenn/onnxruntime/)
#   - the guest apps (guests/target/wasm32-wasip1/release/*.wasm)
#   - the gateway (target/release/edgenn)
#   - the component apps, Rust, Python and JavaScript (guests/target/components/*.wasm), with
#     their tools (componentize-py, jco) in .edgenn/component-tools/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/guest-toolchain.sh
scripts/install-onnxruntime.sh
scripts/build-guests.sh
echo "==> building the gateway (cargo build --release; about 12 minutes the first time on 2 cores)"
cargo build --release --locked
# After the gateway: `edgenn componentize` wraps the Rust components.
scripts/build-components.sh
