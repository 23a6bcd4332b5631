#!/usr/bin/env bash
# Runs every test: set-up, one release build of the gateway, its unit and integration tests
# (which start the real gateway on loopback ports), and the guest SDK's unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> gateway tests (cargo test --release)"
cargo test --release --locked
echo "==> guest SDK and guest unit tests (native)"
cargo test --locked --manifest-path guests/Cargo.toml --workspace
