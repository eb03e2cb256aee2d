#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages, rustup targets and components,
# cargo tools, and the Python tools for cross builds (in .venv/). Safe to run again: it only
# installs what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

# --- Debian packages ---------------------------------------------------------------------------
# binaries the tests run (ps: run-all.sh looks for processes a step left running): dig (bind9-dnsutils), kdig (knot-dnsutils), mosquitto(+clients),
# nginx, dnsmasq, dnsperf, knotd (knot), nsd, qemu-*-static, busybox (static), openssl, ip, curl,
# iptables (the testbed cuts one branch-to-worker path, issue 14)
pkgs=(mosquitto mosquitto-clients nginx-light dnsmasq-base bind9-dnsutils knot-dnsutils dnsperf
      knot nsd qemu-user-static busybox-static musl-tools openssl iproute2 curl xz-utils
      python3-venv procps iptables)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Debian packages: ${missing[*]}"
    # Package installs must not start system services (ports 53/1883/80 stay free for tests).
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        made_policy=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$made_policy" = 1 ] && $sudo rm -f "$policy"
else
    say "Debian packages: all present"
fi

# --- Rust toolchain pieces ----------------------------------------------------------------------
installed_targets=$(rustup target list --installed)
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl thumbv7em-none-eabihf; do
    grep -qx "$t" <<<"$installed_targets" || { say "rustup target add $t"; rustup target add "$t"; }
done
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
if rustup toolchain list | grep -q '^nightly'; then
    rustup +nightly component list --installed | grep -q '^rust-src' \
        || { say "rust-src for nightly"; rustup +nightly component add rust-src; }
fi
command -v cargo-nextest >/dev/null || { say "installing cargo-nextest"; cargo install --locked cargo-nextest; }

# --- Python tools for cross builds (zig as the C cross compiler and linker) ---------------------
if [ ! -x .venv/bin/cargo-zigbuild ]; then
    say "creating .venv with ziglang and cargo-zigbuild"
    python3 -m venv .venv
    .venv/bin/pip install -q ziglang cargo-zigbuild
else
    say "Python tools: present"
fi
say "done"
