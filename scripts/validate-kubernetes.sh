#!/usr/bin/env bash
# Validates deploy/kubernetes/ offline: every manifest against the Kubernetes schemas
# (kubernetes-validate from PyPI, installed idempotently into .edgenn/kubernetes-validate/,
# strict: unknown fields are errors), the Deployment's arguments against what `edgenn serve`
# accepts, and the fleet ConfigMap's file as the gateway reads it. Needs target/release/edgenn.
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC="kubernetes-validate==1.37.0"
VENV=.edgenn/kubernetes-validate
if [[ "$(cat "$VENV/.installed" 2>/dev/null)" != "$SPEC" || ! -x "$VENV/bin/kubernetes-validate" ]]; then
  echo "==> installing $SPEC (from PyPI) into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC"
  echo "$SPEC" >"$VENV/.installed"
fi
"$VENV/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml
target/release/edgenn serve --help >"$VENV/serve-help.txt"
"$VENV/bin/python" - "$VENV/serve-help.txt" <<'PY'
import sys, tomllib, yaml
help_text = open(sys.argv[1]).read()
deployment = yaml.safe_load(open("deploy/kubernetes/deployment.yaml"))
container = deployment["spec"]["template"]["spec"]["containers"][0]
assert container["args"][0] == "serve", container["args"]
for arg in container["args"][1:]:
    flag = arg.split("=")[0]
    assert f"{flag} " in help_text or f"{flag}\n" in help_text, f"edgenn serve has no {flag}"
for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
    assert container[probe]["httpGet"]["path"] in ("/v2/health/ready", "/v2/health/live"), probe
configmap = yaml.safe_load(open("deploy/kubernetes/fleet-configmap.yaml"))
fleet = tomllib.loads(configmap["data"]["fleet.toml"])
assert set(fleet) <= {"apps", "models"} and all(isinstance(v, list) for v in fleet.values()), fleet
print("deploy/kubernetes: schemas, edgenn serve arguments and the fleet file check out")
PY
