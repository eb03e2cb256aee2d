#!/usr/bin/env bash
# The smoltcp/TAP driver test: lints and builds sdwan-agent with the `smoltcp` feature (the
# workspace-wide steps build it without) and runs agent/daemon/tests/tap_dns.rs plus the lib's
# tests (network namespaces with a TAP device, dig from inside).
# Needs root (CI runs as root); elsewhere run it with sudo, or set SDWAN_SKIP_ROOT_TESTS=1.
# About 40 s after the workspace-wide steps (the tests themselves take under 2 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
if [ "$(id -u)" -ne 0 ] && [ "${SDWAN_SKIP_ROOT_TESTS:-0}" != 1 ]; then
    echo "tests/tap.sh: needs root (network namespace and TAP device); run with sudo," >&2
    echo "or set SDWAN_SKIP_ROOT_TESTS=1 to skip it on this machine" >&2
    exit 1
fi
# --workspace with the feature named through the package: the dependencies then resolve to the
# same features as in the workspace-wide steps, so only sdwan-agent itself is built again
# (`-p sdwan-agent` alone would rebuild half the dependency tree: ~3 min more in CI).
cargo clippy --locked --workspace --all-targets --features sdwan-agent/smoltcp -- -D warnings
cargo nextest run --locked --workspace --features sdwan-agent/smoltcp \
    --profile "${NEXTEST_PROFILE:-ci}" -E 'package(sdwan-agent) & (kind(lib) | binary(tap_dns))' \
    --no-tests fail
