#!/usr/bin/env bash
# cross/check-no-std.sh: the agent's core crate must build for a bare-metal target
# (no OS, no std, no heap): `cargo build -p sdwan-agent-core --no-default-features
# --target thumbv7em-none-eabihf`. A std dependency sneaking into the core fails here
# ("can't find crate for `std`"). Installs the rustup target if missing.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=thumbv7em-none-eabihf
cd "$REPO"

if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "cross/check-no-std.sh: rustup target add $TARGET" >&2
    rustup target add "$TARGET" || {
        echo "cross/check-no-std.sh: ERROR: could not install the $TARGET target" >&2
        exit 1
    }
fi

if ! cargo build --locked -p sdwan-agent-core --no-default-features --target "$TARGET"; then
    echo "cross/check-no-std.sh: ERROR: sdwan-agent-core does not build for $TARGET without default features:" >&2
    echo "  it (or a dependency) needs std or an allocator; the core must stay no_std." >&2
    exit 1
fi
echo "cross/check-no-std.sh: sdwan-agent-core builds for $TARGET (no_std)"
