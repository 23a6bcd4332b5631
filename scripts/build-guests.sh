#!/usr/bin/env bash
# Builds every guest app in guests/ (release, wasm32-wasip1) with scripts/guest-cargo; quick
# when nothing changed. Prints where the .wasm files are.
#   scripts/build-guests.sh [extra cargo build args, e.g. -p classify]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/guests/target/wasm32-wasip1/release"

# The Rust components (scripts/rust-components.sh) are built by scripts/build-components.sh:
# separately, because the SDK's `component` feature must not be unified into the WAGI apps' build.
excluded=()
while read -r component; do
    excluded+=(--exclude "$component")
done < <("$repo/scripts/rust-components.sh")

echo "==> building guest apps (scripts/guest-cargo build --release --workspace)" >&2
started=$SECONDS
cd "$repo/guests"
"$repo/scripts/guest-cargo" build --release --locked --workspace "${excluded[@]}" "$@"
echo "==> guests built in $((SECONDS - started)) s: $out/" >&2
for wasm in "$out"/*.wasm; do
    [[ -e "$wasm" ]] || continue
    printf '    %-28s %8s bytes\n' "$(basename "$wasm")" "$(stat -c %s "$wasm")" >&2
done
