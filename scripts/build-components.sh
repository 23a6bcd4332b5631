#!/usr/bin/env bash
# Builds the component apps for the edgenn:app/app world (wit/), after installing the tools
# (scripts/component-tools.sh):
#   Rust crates (below)        -> guests/target/components/<crate>.wasm     (edgenn componentize)
#   guests/python/<app>/app.py -> guests/target/components/<app>-py.wasm   (componentize-py)
#   guests/js/<app>/app.js     -> guests/target/components/<app>-js.wasm   (jco componentize)
#   guests/template-component, guests/template-python/app.py, guests/template-js/app.js (the
#                              `edgenn new --lang rust --component|python|js` templates)
#                              -> guests/target/components/template-py.wasm, template-js.wasm
# A component is rebuilt only when its inputs changed (its app directory, wit/, the tools, this
# script): a stamp beside each .wasm holds their hash, so a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/component-tools.sh
TOOLS=.edgenn/component-tools
OUT=guests/target/components
WORLD=edgenn:app/app
SELF=scripts/build-components.sh
mkdir -p "$OUT"

# The hash of every file under the given paths (names and contents), in a stable order.
inputs_hash() {
  find "$@" -type f ! -path '*/__pycache__/*' ! -name edgenn.toml ! -name README.md -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# build <output name> <hash> <command...>: unless the output's stamp already holds the hash,
# runs the command, which writes "$OUT/<output name>.wasm.tmp", and moves that into place (a
# failed build leaves the previous component, and no stamp for this hash).
build() {
  local name="$1" hash="$2"
  shift 2
  local wasm="$OUT/$name.wasm" tmp="$OUT/$name.wasm.tmp"
  if [[ -f "$wasm" && "$(cat "$wasm.stamp" 2>/dev/null)" == "$hash" ]]; then
    echo "==> $name.wasm is up to date"
    return
  fi
  echo "==> building $name.wasm"
  local started=$SECONDS
  rm -f "$tmp"
  "$@"
  mv "$tmp" "$wasm"
  echo "$hash" >"$wasm.stamp"
  echo "    built in $((SECONDS - started)) s"
}

# Rust: the crates build as wasm32-wasip1 reactors (cdylib, wasi-libc's reactor start file) with
# the SDK's `component` feature, in a target directory of their own (so neither that feature nor
# the start file reaches the WAGI apps' build), and `edgenn componentize` makes each a component
# (with the preview1 proxy adapter only for a module that imports preview1: the SDK defines what
# std needs, so most need none). scripts/rust-components.sh says which crates are components (and
# scripts/build-guests.sh leaves those out); each component is named by its package.
mapfile -t RUST_COMPONENTS < <(scripts/rust-components.sh)
EDGENN=target/release/edgenn
[[ -x "$EDGENN" ]] || { echo "build-components: $EDGENN is missing (cargo build --release first)" >&2; exit 1; }
packages=()
for crate in "${RUST_COMPONENTS[@]}"; do
  packages+=(-p "$crate")
done
echo "==> building the Rust components (${RUST_COMPONENTS[*]})"
(cd guests && CARGO_TARGET_DIR=target/component-build EDGENN_GUEST_CRT=reactor \
  ../scripts/guest-cargo build --release --locked "${packages[@]}")
for crate in "${RUST_COMPONENTS[@]}"; do
  module="guests/target/component-build/wasm32-wasip1/release/${crate//-/_}.wasm"
  wasm="$OUT/$crate.wasm"
  if [[ ! -f "$wasm" || "$module" -nt "$wasm" || "$EDGENN" -nt "$wasm" ]]; then
    "$EDGENN" componentize "$module" -o "$wasm.tmp" >/dev/null
    mv "$wasm.tmp" "$wasm"
  fi
done

# Python: componentize-py generates the bindings (wit_world) and snapshots CPython with the app
# imported. VIRTUAL_ENV points it at the tools' own venv, whose site-packages it searches
# besides -p, instead of whatever site-packages the machine's python3 has.
# The template is built too, so that it is known to build; its name without the -python.
for app in guests/python/*/app.py guests/template-python/app.py; do
  [[ -e "$app" ]] || continue
  dir="$(dirname "$app")"
  name="$(basename "${dir%-python}")-py"
  hash="$(inputs_hash "$dir" wit "$TOOLS/py/.installed" "$SELF")"
  build "$name" "$hash" \
    env VIRTUAL_ENV="$PWD/$TOOLS/py" "$TOOLS/py/bin/componentize-py" --quiet -d wit -w "$WORLD" \
    componentize -p "$dir" app -o "$OUT/$name.wasm.tmp"
done

# JavaScript: jco componentize (componentize-js, StarlingMonkey). scripts/jco-preopen.mjs lets
# the WASI-hosted tools inside jco see the repository (see there).
JCO="$TOOLS/js/node_modules/@bytecodealliance/jco/dist/jco.js"
for app in guests/js/*/app.js guests/template-js/app.js; do
  [[ -e "$app" ]] || continue
  dir="$(dirname "$app")"
  name="$(basename "${dir%-js}")-js"
  hash="$(inputs_hash "$dir" wit "$TOOLS/js/.installed" scripts/jco-preopen.mjs "$SELF")"
  # Absolute paths: jco runs componentize-js from the source's directory.
  build "$name" "$hash" \
    node --import ./scripts/jco-preopen.mjs "$JCO" componentize "$PWD/$app" --wit "$PWD/wit" \
    --world-name "$WORLD" -o "$PWD/$OUT/$name.wasm.tmp"
done

echo "==> components: $OUT/"
for wasm in "$OUT"/*.wasm; do
  [[ -e "$wasm" ]] || continue
  printf '    %-28s %9s bytes\n' "$(basename "$wasm")" "$(stat -c %s "$wasm")"
done
