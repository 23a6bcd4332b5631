#!/usr/bin/env bash
# Installs the tools that build the Python and JavaScript guest apps into WebAssembly
# components, idempotently (a second run takes well under a second and downloads nothing):
#   - componentize-py (PyPI) in a venv:                     .edgenn/component-tools/py/
#   - jco + componentize-js (npm, guests/js/package-lock.json): .edgenn/component-tools/js/
# Nothing is installed outside .edgenn/. Each half is redone only when its pinned version (or
# the npm lockfile) changes; a stamp file in each directory records what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.edgenn/component-tools

# --- Python: componentize-py ------------------------------------------------------------------
PY_SPEC="componentize-py==0.25.1"
PY="$TOOLS/py"
if [[ "$(cat "$PY/.installed" 2>/dev/null)" != "$PY_SPEC" || ! -x "$PY/bin/componentize-py" ]]; then
  echo "==> installing $PY_SPEC (from PyPI) into $PY"
  rm -rf "$PY"
  python3 -m venv "$PY"
  # The wheel bundles CPython for wasm and the component tooling: it has no dependencies.
  "$PY/bin/python" -m pip install --quiet --disable-pip-version-check "$PY_SPEC"
  echo "$PY_SPEC" >"$PY/.installed"
  echo "    $PY/bin/componentize-py ($("$PY/bin/componentize-py" --version))"
fi

# --- JavaScript: jco + componentize-js ----------------------------------------------------------
# The versions are pinned by guests/js/package.json and, with every transitive dependency, by
# its package-lock.json (jco's own ranges are carets), so each machine builds with the same
# tools. npm ci installs exactly the lockfile; it runs in a copy under .edgenn so no
# node_modules/ appears in the source tree.
JS="$TOOLS/js"
js_stamp="$(cat guests/js/package.json guests/js/package-lock.json | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$JS/.installed" 2>/dev/null)" != "$js_stamp" \
  || ! -x "$JS/node_modules/.bin/jco" ]]; then
  echo "==> installing jco and componentize-js (npm, guests/js/package-lock.json) into $JS"
  mkdir -p "$JS"
  cp guests/js/package.json guests/js/package-lock.json "$JS/"
  # No package has an install script; --ignore-scripts keeps it that way if one ever does.
  npm ci --prefix "$JS" --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$js_stamp" >"$JS/.installed"
  echo "    $JS/node_modules/.bin/jco ($("$JS/node_modules/.bin/jco" --version))"
fi
