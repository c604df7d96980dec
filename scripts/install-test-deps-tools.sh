#!/usr/bin/env bash
# Installs what the CI-tools tests (berth tags/lint/copy/inspect, the
# berth-client tests) drive, on Debian 12, as root or with sudo:
#
#   skopeo            builds/pushes multi-arch images, reads and writes
#                     docker-archive and OCI layouts to cross-check berth copy
#   docker-registry   the reference registry (CNCF Distribution 2.8)
#   nodejs, npm       to run the SARIF validator
#   @microsoft/sarif-multitool (npm, pinned)
#                     validates `berth lint -o sarif` against the SARIF 2.1.0
#                     schema and rules (a self-contained .NET binary)
#   chromium, playwright-core and axe-core (npm, pinned)
#                     the web UI's end-to-end and accessibility tests drive
#                     Debian's headless Chromium with Playwright
#   @sigstore/sign (npm, pinned; 3.x runs on Debian's node 18 too)
#                     sigstore's own bundle builders make the sigstore
#                     bundles the signature tests verify (offline: a local
#                     key, no Fulcio, no Rekor)
#
# Idempotent: when everything is present it only checks and exits, without
# touching the network. apt waits for a lock another package manager holds
# (scripts/apt.sh).
set -euo pipefail
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"

SARIF_MULTITOOL_VERSION=5.7.0
PLAYWRIGHT_CORE_VERSION=1.65.1
AXE_CORE_VERSION=4.14.1
SIGSTORE_SIGN_VERSION=3.1.0
APT_PACKAGES=(skopeo docker-registry nodejs npm ca-certificates chromium)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

multitool_ok() {
  command -v npx >/dev/null 2>&1 || return 1
  local root
  root="$(npm root -g 2>/dev/null)" || return 1
  [ -f "$root/@microsoft/sarif-multitool/package.json" ] || return 1
  grep -q "\"version\": \"$SARIF_MULTITOOL_VERSION\"" "$root/@microsoft/sarif-multitool/package.json"
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
# A node from elsewhere (nvm, nodesource) is fine too.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in nodejs | npm) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps-tools: apt-get install ${missing[*]}"
  apt_update
  apt_install "${missing[@]}"
fi

if ! multitool_ok; then
  echo "install-test-deps-tools: npm install -g @microsoft/sarif-multitool@$SARIF_MULTITOOL_VERSION"
  $SUDO npm install -g --no-audit --no-fund "@microsoft/sarif-multitool@$SARIF_MULTITOOL_VERSION"
  # The package's postinstall (chmod u+x) may be skipped by npm's script policy.
  root="$(npm root -g)"
  find "$root/@microsoft/sarif-multitool" -name Sarif.Multitool -type f -exec $SUDO chmod a+x {} +
fi

npm_pinned() {
  local root
  root="$(npm root -g 2>/dev/null)" || return 1
  [ -f "$root/$1/package.json" ] || return 1
  grep -q "\"version\": \"$2\"" "$root/$1/package.json"
}

if ! npm_pinned playwright-core "$PLAYWRIGHT_CORE_VERSION" || ! npm_pinned axe-core "$AXE_CORE_VERSION"; then
  echo "install-test-deps-tools: npm install -g playwright-core@$PLAYWRIGHT_CORE_VERSION axe-core@$AXE_CORE_VERSION"
  # The browser is Debian's chromium: Playwright downloads none.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $SUDO npm install -g --no-audit --no-fund \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" "axe-core@$AXE_CORE_VERSION"
fi

if ! npm_pinned @sigstore/sign "$SIGSTORE_SIGN_VERSION"; then
  echo "install-test-deps-tools: npm install -g @sigstore/sign@$SIGSTORE_SIGN_VERSION"
  $SUDO npm install -g --no-audit --no-fund "@sigstore/sign@$SIGSTORE_SIGN_VERSION"
fi

# Smoke test: the validator runs (the .NET runtime needs no ICU this way).
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
npx --no-install @microsoft/sarif-multitool --version >/dev/null 2>&1 ||
  { echo "install-test-deps-tools: sarif-multitool does not run" >&2; exit 1; }
echo "install-test-deps-tools: everything is present"
