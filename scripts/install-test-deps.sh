#!/usr/bin/env bash
# Installs the external programs berth's tests drive, on Debian 12 (run as
# root, or as a user with sudo):
#
#   skopeo           push/pull/copy --all/inspect/list-tags/delete interop tests
#   docker-registry  the reference registry (CNCF Distribution 2.8): tests, bench
#   podman, buildah  pull/push and build-from-scratch tests on the vfs driver
#   umoci            checks the test-image layouts unpack
#   uidmap, fuse-overlayfs  what podman/buildah expect next to them
#   python3, python3-pip    for the oras Python SDK
#   postgresql       server binaries for the metadata suite (the tests start
#                    their own throwaway cluster; the Debian service is unused)
#   oras (PyPI, pinned)     artifacts with a subject, the referrers API
#
# Idempotent: when everything is present it only checks and exits (no
# apt-get update, no network). Client configuration (policy.json,
# registries.conf, storage roots, the vfs driver) is passed by the tests
# themselves through flags and environment variables; nothing is written
# under /etc by this script.
set -euo pipefail

ORAS_VERSION=0.2.43
APT_PACKAGES=(
  skopeo
  docker-registry
  podman
  buildah
  umoci
  postgresql
  uidmap
  fuse-overlayfs
  python3
  python3-pip
  ca-certificates
  tar
  gzip
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

oras_ok() {
  python3 - "$ORAS_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import oras.provider, oras.oci, oras.version
sys.exit(0 if oras.version.__version__ == sys.argv[1] else 1)
EOF
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

need_oras=0
if ! command -v python3 >/dev/null 2>&1 || ! oras_ok; then
  need_oras=1
fi

if [ "${#missing[@]}" -eq 0 ] && [ "$need_oras" -eq 0 ]; then
  echo "install-test-deps: everything is present"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! oras_ok; then
  echo "install-test-deps: installing oras==${ORAS_VERSION} for $(command -v python3)"
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check "oras==${ORAS_VERSION}")
  # Debian's own python3 is "externally managed" (PEP 668); a pyenv or
  # virtualenv python3 is not. Try the polite way first.
  if [ "$(id -u)" -ne 0 ] && ! python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
    pip_install+=(--user)
  fi
  "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
  oras_ok || { echo "install-test-deps: oras ${ORAS_VERSION} is still not importable" >&2; exit 1; }
fi

echo "install-test-deps: done"
