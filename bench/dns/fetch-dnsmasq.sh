#!/usr/bin/env bash
# bench/dns/fetch-dnsmasq.sh ARCH DIR
#
# Fetches Debian's own dnsmasq build for ARCH (mipsel, mips, armhf, arm64, ...) and the
# libraries it links, with `apt-get download`, and unpacks them with `dpkg-deb -x` into
# DIR/root, for `qemu-<arch>-static -L DIR/root DIR/root/usr/sbin/dnsmasq`
# (bench/dns/run.sh with BENCH_ARCH and BENCH_DNSMASQ_ROOT=DIR/root). Nothing is installed.
#
# apt needs ARCH as a foreign architecture to download its packages: the script adds it for
# the download and removes it again on every exit path (then `apt-get update`), unless it was
# already enabled before. Needs root and Debian's apt sources (Debian 12 still has mipsel).
# Only library packages are followed in Depends (passwd & co. serve the maintainer scripts,
# which are not run).
set -euo pipefail

die() {
    echo "bench/dns/fetch-dnsmasq.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "bench/dns/fetch-dnsmasq.sh: $*" >&2; }

[[ $# == 2 ]] || die "usage: bench/dns/fetch-dnsmasq.sh ARCH DIR   (e.g. mipsel /tmp/dnsmasq-mipsel)"
ARCH=$1
DIR=$2
[[ $ARCH =~ ^[a-z0-9]+$ ]] || die "'$ARCH' is not a Debian architecture name"
[[ $(id -u) == 0 ]] || die "needs root (dpkg --add-architecture, apt-get update)"
for cmd in apt-get apt-cache dpkg dpkg-deb python3; do
    command -v "$cmd" >/dev/null || die "'$cmd' is missing"
done

added=0
cleanup() {
    if [[ $added == 1 ]]; then
        say "removing the foreign architecture $ARCH again"
        dpkg --remove-architecture "$ARCH" || say "WARNING: dpkg --remove-architecture $ARCH failed"
        apt-get update -qq || say "WARNING: apt-get update failed"
    fi
}
trap cleanup EXIT
if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    say "adding the foreign architecture $ARCH for the download"
    dpkg --add-architecture "$ARCH"
    added=1
fi
apt-get update -qq

# dnsmasq-base and, transitively, the library packages it depends on.
pkgs=$(python3 - "$ARCH" <<'PY'
import re, subprocess, sys
arch = sys.argv[1]
seen, todo = set(), ["dnsmasq-base"]
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    out = subprocess.run(
        ["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", f"{p}:{arch}"],
        capture_output=True, text=True, check=True).stdout
    for m in re.finditer(r"^\s+(?:Pre)?Depends: <?([^>:\s]+)", out, re.M):
        d = m.group(1)
        if d.startswith("lib") or d.endswith("-base"):
            todo.append(d)
print(" ".join(f"{p}:{arch}" for p in sorted(seen)))
PY
)
mkdir -p "$DIR/debs" "$DIR/root"
DIR=$(cd "$DIR" && pwd)
say "downloading $pkgs"
# (apt warns that it downloads as root when DIR is not readable by _apt: harmless)
# shellcheck disable=SC2086 # one word per package
if ! (cd "$DIR/debs" && apt-get download $pkgs) >"$DIR/download.log" 2>&1; then
    tail -n 20 "$DIR/download.log" >&2
    die "apt-get download failed (log: $DIR/download.log)"
fi
for deb in "$DIR"/debs/*.deb; do
    dpkg-deb -x "$deb" "$DIR/root"
done
[[ -f $DIR/root/usr/sbin/dnsmasq ]] || die "no usr/sbin/dnsmasq in the unpacked packages"
say "unpacked into $DIR/root: BENCH_ARCH=... BENCH_DNSMASQ_ROOT=$DIR/root bench/dns/run.sh"
