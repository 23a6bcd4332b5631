#!/usr/bin/env bash
# Installs Debian's docker-registry (the CNCF distribution registry) and htpasswd (apache2-utils,
# for a registry that wants a password) idempotently, for the tests that push and pull apps and
# models as OCI artifacts (tests/common/registry.rs starts registries on free ports with
# temporary storage). Prints the registry's path.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests start registries from several threads at once: one install at a time (apt-get would
# refuse the second with dpkg's lock held), the others wait and find it installed.
mkdir -p .edgenn
exec 9>.edgenn/registry.lock
flock 9
# Installs Debian packages, refreshing the package lists once if the first try fails. The
# lock timeout waits for another apt run (scripts/setup.sh's, say) instead of failing.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >&2 \
    || { apt-get update -q -o DPkg::Lock::Timeout=600 >&2 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >&2; }
}
if ! command -v docker-registry >/dev/null; then
  echo "==> installing Debian's docker-registry (apt-get)" >&2
  # The package's service is not started: policy-rc.d or the lack of systemd refuse it, and
  # the tests run their own.
  apt_install docker-registry
fi
if ! command -v htpasswd >/dev/null; then
  echo "==> installing Debian's apache2-utils for htpasswd (apt-get)" >&2
  apt_install apache2-utils
fi
command -v docker-registry
