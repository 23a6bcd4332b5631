#!/usr/bin/env bash
# Sets up (idempotently) and starts the gateway on http://127.0.0.1:8080 with the bundled
# models and guest apps. Arguments are passed to `edgenn serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec target/release/edgenn serve "$@"
