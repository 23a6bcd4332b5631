#!/usr/bin/env bash
# Builds app.py into app.wasm (the component edgenn.toml names), in this directory, with the
# tools of an edgenn checkout: its wit/ and the componentize-py that its
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
TOOLS="$EDGENN_HOME/.edgenn/component-tools"
started=$SECONDS
# VIRTUAL_ENV points componentize-py at the tools' own venv, whose site-packages it searches
# besides -p, instead of whatever site-packages the machine's python3 has. Written beside the
# target and moved into place, so a failed build leaves the previous app.wasm.
VIRTUAL_ENV="$TOOLS/py" "$TOOLS/py/bin/componentize-py" --quiet -d "$EDGENN_HOME/wit" \
  -w edgenn:app/app componentize -p . app -o app.wasm.tmp
mv app.wasm.tmp app.wasm
echo "built $PWD/app.wasm ($(stat -c %s app.wasm) bytes) in $((SECONDS - started)) s"
