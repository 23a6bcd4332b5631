#!/usr/bin/env bash
# Builds app.js into app.wasm (the component edgenn.toml names), in this directory, with the
# tools of an edgenn checkout: its wit/ and the jco + componentize-js that its
# scripts/component-tools.sh installs (on the first run) into its .edgenn/component-tools/.
#
#   ./build.sh                              with the checkout this app was made from
#   EDGENN_HOME=/path/to/edgenn ./build.sh  with another one
set -euo pipefail
cd "$(dirname "$0")"
EDGENN_HOME="${EDGENN_HOME:-@EDGENN_HOME@}"
# `edgenn new` writes its checkout's path over the placeholder above (spelled in pieces here so
# that it is not replaced too); left as it is, this is the template inside the checkout itself.
if [[ "$EDGENN_HOME" == "@""EDGENN_HOME""@" ]]; then
  EDGENN_HOME="$(cd ../.. && pwd)"
fi
[[ -f "$EDGENN_HOME/wit/world.wit" ]] || {
  echo "build.sh: $EDGENN_HOME is not an edgenn checkout (no wit/world.wit); set EDGENN_HOME" >&2
  exit 1
}
"$EDGENN_HOME/scripts/component-tools.sh"
JCO="$EDGENN_HOME/.edgenn/component-tools/js/node_modules/@bytecodealliance/jco/dist/jco.js"
started=$SECONDS
# scripts/jco-preopen.mjs lets the WASI-hosted tools inside jco read the checkout's wit/ (see
# there). --bundle (Rolldown) inlines what app.js imports from other files and node_modules/:
# the engine cannot load a module file when the component is built. Absolute paths: jco runs
# componentize-js from the source's directory. Written beside the target and moved into place,
# so a failed build leaves the previous app.wasm.
node --import "$EDGENN_HOME/scripts/jco-preopen.mjs" \
  "$JCO" componentize "$PWD/app.js" --bundle --wit "$EDGENN_HOME/wit" \
  --world-name edgenn:app/app -o "$PWD/app.wasm.tmp" >/dev/null
mv app.wasm.tmp app.wasm
echo "built $PWD/app.wasm ($(stat -c %s app.wasm) bytes) in $((SECONDS - started)) s"
