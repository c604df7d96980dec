#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs everything the tests
# need (Debian and PyPI packages), then checks formatting and lints and runs
# every test of the workspace, including the interoperability tests with
# real OCI clients and the reference registry.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
if [ -f scripts/install-test-deps-tools.sh ]; then
  bash scripts/install-test-deps-tools.sh
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
