#!/usr/bin/env bash
# Prints the package name of every Rust guest crate in guests/ that is a component, one a line:
# a crate that turns on the SDK's `component` feature. scripts/build-components.sh builds those
# (as reactors, with `edgenn componentize`); scripts/build-guests.sh leaves them out of the WAGI
# build, so that the feature is not unified into the WAGI apps. The package name (the first
# `name =` of the Cargo.toml) is what `cargo -p` takes; it need not be the directory's
# (guests/template-component is my-component).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for manifest in "$repo"/guests/*/Cargo.toml "$repo"/guests/test-programs/*/Cargo.toml; do
  if grep -q '^edgenn-guest-sdk = .*"component"' "$manifest"; then
    sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1
  fi
done
