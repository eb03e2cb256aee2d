#!/usr/bin/env bash
# bench/scale (issue 11): the whole system at 5,000 services x 500 workers x 2,000 gateways.
# Prints Markdown tables for docs/benchmarks.md:
#   1. the system run (sdwan-bench-scale run): a real mosquitto with TLS and the design ACL,
#      the fake API server with plan-bench's synthetic cluster, the master, 2,000 gateway and
#      500 worker sessions of the load generator and three real agents; first publish, three
#      kinds of change, a master restart, agent RSS;
#   2. snapshot and delta apply time of agent/core's v2 zone (sdwan-bench-apply), on x86_64
#      and on mipsel under qemu-user.
# Needs mosquitto, dig (tests/setup.sh), and for mipsel qemu-mipsel-static, a nightly
# toolchain with rust-src and zig + cargo-zigbuild (set up as cross/build.sh does).
#
#   bench/scale/run.sh                    all, payload v2 (what gateways subscribe to)
#   bench/scale/run.sh --payload v1       gateways subscribe to v1 zones instead
#   bench/scale/run.sh --services 1000    any option of `sdwan-bench-scale run`
#   SCALE_PARTS=system|apply              only one of the two tables
#   SCALE_MIPSEL=0                        skip the mipsel build and run
#   SCALE_AGENT_BIN=PATH                  the real agents' binary, e.g. the static musl one
#                                         of cross/build.sh (issue 11's RSS target is for it)
#
# The system run uses the dev profile with the workspace crates at opt-level 2
# (CARGO_PROFILE_DEV_OPT_LEVEL, dependencies stay at the profile's opt-level 1, already
# built): the master plans 2,000 gateways and the load generator decodes every message, which
# at opt-level 0 would measure the debug build. The apply timer is a release build (opt-level
# z, as the agent on a router). Every process the bench starts is stopped by its PID.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
parts=${SCALE_PARTS:-all}
target=${CARGO_TARGET_DIR:-$REPO/target}

echo "# bench/scale, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

if [[ $parts == all || $parts == system ]]; then
    CARGO_PROFILE_DEV_OPT_LEVEL=${SCALE_OPT_LEVEL:-2} cargo build -q \
        -p sdwan-bench-scale -p sdwan-discovery -p sdwan-agent
    "$target/debug/sdwan-bench-scale" run --master "$target/debug/sdwan-discovery" \
        --agent "${SCALE_AGENT_BIN:-$target/debug/sdwan-agent}" "$@"
fi

if [[ $parts == all || $parts == apply ]]; then
    msgs=$(mktemp -d)
    trap 'rm -rf "$msgs"' EXIT
    CARGO_PROFILE_DEV_OPT_LEVEL=${SCALE_OPT_LEVEL:-2} cargo build -q -p sdwan-bench-scale
    "$target/debug/sdwan-bench-scale" messages "$msgs" >&2
    cargo build -q --release -p sdwan-bench-apply
    echo "| CPU | snapshot | snapshot load (all parts, checked, swapped): median / max | delta apply (checked, swapped): median / p99 / max | zone heap used |"
    echo "|---|---|---|---|---|"
    "$target/release/sdwan-bench-apply" "$msgs" 10 | sed 's/^| x86_64 /| x86_64 (release, opt-level z) /'
    if [[ ${SCALE_MIPSEL:-1} == 1 ]]; then
        t=mipsel-unknown-linux-musl
        venv=${SDWAN_CROSS_VENV:-$REPO/.venv}
        if ! command -v qemu-mipsel-static >/dev/null; then
            echo "| mipsel | not run: qemu-mipsel-static is not installed (Debian: qemu-user-static) | | | |"
        elif [[ ! -x $venv/bin/cargo-zigbuild ]]; then
            echo "| mipsel | not run: no cargo-zigbuild in $venv (cross/build.sh sets it up) | | | |"
        else
            export PATH="$venv/bin:$PATH"
            export ZIG_GLOBAL_CACHE_DIR=$target/cross/.cache/zig XDG_CACHE_HOME=$target/cross/.cache
            mkdir -p "$ZIG_GLOBAL_CACHE_DIR"
            log=$(mktemp)
            start=$(date +%s)
            # docs/cross.md: std from source (mips targets are tier 3), zig links, static.
            if RUSTFLAGS="-C target-feature=+crt-static -C link-self-contained=no" \
                cargo +nightly zigbuild -q --release -p sdwan-bench-apply \
                -Zbuild-std=std,panic_abort --target "$t" >"$log" 2>&1; then
                echo "mipsel build: $(($(date +%s) - start)) s" >&2
                qemu-mipsel-static "$target/$t/release/sdwan-bench-apply" "$msgs" 3 |
                    sed 's/^| mips /| mipsel (qemu-mipsel-static, release, opt-level z) /'
            else
                grep -v 'unable to open library directory' "$log" | tail -n 20 >&2
                echo "| mipsel | not run: the cross build failed (log above) | | | |"
            fi
            rm -f "$log"
        fi
    fi
fi
