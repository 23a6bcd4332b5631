#!/usr/bin/env bash
# Runs every test: formatting and lints, set-up, one release build of the gateway, its unit
# and integration tests (which start the real gateway on loopback ports), the guests' unit
# tests and the demo page in a real headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> formatting (cargo fmt --check), gateway and guests"
cargo fmt --check
(cd guests && cargo fmt --check)
scripts/setup.sh
echo "==> lints (cargo clippy -D warnings), gateway and guests"
cargo clippy --release --locked --all-targets -- -D warnings
cargo clippy --locked --manifest-path guests/Cargo.toml --workspace --all-targets -- -D warnings
echo "==> gateway tests (cargo test --release)"
cargo test --release --locked
echo "==> the Kubernetes manifests, offline (scripts/validate-kubernetes.sh)"
scripts/validate-kubernetes.sh
echo "==> guest SDK and guest unit tests (native)"
cargo test --locked --manifest-path guests/Cargo.toml --workspace
echo "==> the demo page in headless Chromium (scripts/test-browser.sh)"
EDGENN_SKIP_SETUP=1 scripts/test-browser.sh
