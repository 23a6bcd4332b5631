#!/usr/bin/env bash
# Installs Debian's docker-registry (the CNCF distribution registry) idempotently, for the
# tests that push and pull apps and models as OCI artifacts (tests/registry.rs starts its own
# registry on a loopback port with a temporary storage directory). Prints the binary's path.
set -euo pipefail
if ! command -v docker-registry >/dev/null; then
  echo "==> installing Debian's docker-registry (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package's service is not started: policy-rc.d or the lack of systemd refuse it, and
  # the tests run their own.
  apt-get install -y -q docker-registry >&2 || { apt-get update -q >&2 && apt-get install -y -q docker-registry >&2; }
fi
command -v docker-registry
