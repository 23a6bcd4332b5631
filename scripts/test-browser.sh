#!/usr/bin/env bash
# The demo page (web-demo/) in a real headless Chromium against the real gateway:
#   - installs Debian's chromium with apt-get when /usr/bin/chromium is missing (needs root),
#   - installs tests/browser's npm dependencies (playwright-core, pinned in package-lock.json)
#     with `npm ci` when node_modules is missing or older than the lock file,
#   - sets up and builds edgenn (scripts/setup.sh; seconds when already done; skip it with
#     EDGENN_SKIP_SETUP=1),
#   - starts the gateway (EDGENN_BIN, default target/release/edgenn) on a free loopback port
#     with the classify, predict and digits apps,
#   - runs `node --test tests/browser/` with EDGENN_URL set, then stops the gateway.
# The last page state is saved to target/browser/demo.png. Extra arguments go to `node --test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
    echo "==> installing Debian's chromium (apt-get)" >&2
    apt-get update -q -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends chromium fonts-dejavu-core
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "test-browser: node (>= 20) and npm are needed" >&2
    exit 1
fi

# npm ci when node_modules is missing or stale: a stamp holds the hash of the lock file it was
# installed from.
lock_hash="$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)"
stamp=tests/browser/node_modules/.edgenn-lock.sha256
if [[ ! -f $stamp || "$(cat "$stamp")" != "$lock_hash" ]]; then
    echo "==> installing the browser test's npm dependencies (npm ci)" >&2
    (cd tests/browser && npm ci --no-audit --no-fund)
    echo "$lock_hash" >"$stamp"
fi

if [[ ${EDGENN_SKIP_SETUP:-0} != 1 ]]; then
    scripts/setup.sh
fi

tmp="$(mktemp -d)"
gateway=""
stop_gateway() {
    if [[ -n $gateway ]]; then
        exec 3>&- # end of the gateway's stdin: it shuts down (--exit-on-stdin-eof)
        for _ in $(seq 50); do
            kill -0 "$gateway" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$gateway" 2>/dev/null; then
            echo "test-browser: the gateway did not stop on stdin EOF; killing it" >&2
            kill "$gateway" 2>/dev/null || true
        fi
        wait "$gateway" 2>/dev/null || true
        gateway=""
    fi
    rm -rf "$tmp"
}
trap stop_gateway EXIT

echo "==> starting the gateway (classify, predict, digits) on a free loopback port" >&2
mkfifo "$tmp/stdin"
"${EDGENN_BIN:-target/release/edgenn}" serve --listen 127.0.0.1:0 --exit-on-stdin-eof \
    --app guests/classify --app guests/predict --app guests/digits \
    <"$tmp/stdin" >"$tmp/stdout" 2>"$tmp/stderr" &
gateway=$!
exec 3>"$tmp/stdin" # held open for as long as the gateway should run

url=""
for _ in $(seq 600); do # up to 2 minutes (models are loaded before it listens)
    line=""
    if [[ "$(wc -l <"$tmp/stdout")" -ge 1 ]]; then # a whole first line
        line="$(head -n 1 "$tmp/stdout")"
    fi
    if [[ $line =~ ^edgenn\ listening\ on\ (http://[^[:space:]]+) ]]; then
        url="${BASH_REMATCH[1]}"
        break
    fi
    if ! kill -0 "$gateway" 2>/dev/null; then
        break
    fi
    sleep 0.2
done
if [[ -z $url ]]; then
    echo "test-browser: the gateway did not start; its output:" >&2
    cat "$tmp/stdout" "$tmp/stderr" >&2
    exit 1
fi
echo "==> gateway at $url; running node --test tests/browser/" >&2

status=0
EDGENN_URL="$url" node --test "$@" tests/browser/ || status=$?
if [[ $status != 0 ]]; then
    echo "==> gateway log (last 40 lines):" >&2
    tail -n 40 "$tmp/stderr" >&2
fi
[[ -f target/browser/demo.png ]] && echo "==> screenshot: target/browser/demo.png" >&2
exit "$status"
