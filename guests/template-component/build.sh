#!/usr/bin/env bash
# Builds this app into the component its edgenn.toml names (`wasm`), with an edgenn checkout:
# its guest toolchain (scripts/guest-cargo) builds the crate as a wasm32-wasip1 reactor, and its
# `edgenn componentize` makes that a component (with the preview1 proxy adapter only if the
# module imports preview1).
#
#   ./build.sh                              with the checkout this app was made from
#   EDGENN_HOME=/path/to/edgenn ./build.sh  with another one
#   CARGO_TARGET_DIR=... ./build.sh         with another cargo target directory
set -euo pipefail
cd "$(dirname "$0")"
EDGENN_HOME="${EDGENN_HOME:-@EDGENN_HOME@}"
# `edgenn new` writes its checkout's path over the placeholder above (spelled in pieces here so
# that it is not replaced too); left as it is, this is the template inside the checkout itself.
if [[ "$EDGENN_HOME" == "@""EDGENN_HOME""@" ]]; then
  EDGENN_HOME="$(cd ../.. && pwd)"
fi
EDGENN="$EDGENN_HOME/target/release/edgenn"
[[ -x "$EDGENN" && -x "$EDGENN_HOME/scripts/guest-cargo" ]] || {
  echo "build.sh: $EDGENN_HOME is not a built edgenn checkout (no target/release/edgenn:" \
    "run its scripts/setup.sh); set EDGENN_HOME" >&2
  exit 1
}
wasm="$(sed -n 's/^wasm = "\(.*\)"$/\1/p' edgenn.toml)"
[[ -n "$wasm" ]] || { echo "build.sh: edgenn.toml names no wasm file" >&2; exit 1; }
started=$SECONDS
# Reactors link wasi-libc's reactor start-up file (no `main`); guest-cargo picks it.
EDGENN_GUEST_CRT=reactor "$EDGENN_HOME/scripts/guest-cargo" build --release --manifest-path Cargo.toml
target="$("$EDGENN_HOME/scripts/guest-cargo" metadata --format-version 1 --no-deps --manifest-path Cargo.toml |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
# Written beside the target and moved into place, so a failed build leaves the previous one.
mkdir -p "$(dirname "$wasm")"
"$EDGENN" componentize "$target/wasm32-wasip1/release/my_component.wasm" -o "$wasm.tmp" >/dev/null
mv "$wasm.tmp" "$wasm"
echo "built $PWD/$wasm ($(stat -c %s "$wasm") bytes) in $((SECONDS - started)) s"
