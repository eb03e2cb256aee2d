#!/usr/bin/env bash
# openwrt/build-ipk.sh [TARGET...]
#
# Packs the cross/build.sh binaries into OpenWrt 24.10 (opkg) packages, without the SDK:
#   $CARGO_TARGET_DIR/openwrt/sdwan-agent_<version>-r<release>_<arch>.ipk  (+ Packages, Packages.gz)
#     the gateway package, holding the gateway build (cross/<target>/sdwan-agent: no worker mode)
#   $CARGO_TARGET_DIR/openwrt/sdwan-agent-worker_<version>-r<release>_<arch>.ipk
#     the worker package, for each target cross/build.sh made a worker build for (x86_64 and
#     aarch64 by default): cross/<target>/sdwan-agent-worker as /usr/bin/sdwan-agent-worker,
#     its config file and procd init script (openwrt/sdwan-agent/files/sdwan-agent-worker.*)
# An .ipk is what OpenWrt's scripts/ipkg-build makes: a gzipped tar of ./debian-binary ("2.0"),
# ./data.tar.gz (the files) and ./control.tar.gz (control, conffiles, postinst, prerm).
# The files are the feed package's (openwrt/sdwan-agent/files), installed where its Makefile
# installs them. Reproducible: fixed owner, sorted names, mtime = the last commit's time.
#
# Environment: CARGO_TARGET_DIR (default <repo>/target),
#   SDWAN_IPK_EXTRA_ARCH  more "target=arch" pairs, e.g. "aarch64-unknown-linux-musl=aarch64_cortex-a53"
#                         (the binaries are static, so one runs on every CPU of its family).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG_DIR=$REPO/openwrt/sdwan-agent
FILES=$PKG_DIR/files
WORKER_FILES=$REPO/openwrt/sdwan-agent/files
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN_DIR=$CARGO_TARGET_DIR/cross
OUT=$CARGO_TARGET_DIR/openwrt

die() {
    echo "openwrt/build-ipk.sh: ERROR: $*" >&2
    exit 1
}

# Rust target -> OpenWrt package architecture (the generic one of each family).
declare -A ARCH=(
    [x86_64-unknown-linux-musl]=x86_64
    [aarch64-unknown-linux-musl]=aarch64_generic
    [armv7-unknown-linux-musleabihf]=arm_cortex-a7_neon-vfpv4
    [mips-unknown-linux-musl]=mips_24kc
    [mipsel-unknown-linux-musl]=mipsel_24kc
)
ORDER=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf
    mips-unknown-linux-musl mipsel-unknown-linux-musl)

requested=("$@")
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ORDER[@]}")
for t in "${targets[@]}"; do
    [[ -n "${ARCH[$t]:-}" ]] || die "unknown target '$t' (known: ${ORDER[*]})"
done

for cmd in tar gzip sha256sum; do
    command -v "$cmd" >/dev/null || die "'$cmd' is not installed"
done
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is needed (--sort=name, --owner)"

# Version: the workspace's, checked against the feed Makefile so the two never drift.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml")
[[ -n $version ]] || die "no [workspace.package] version in Cargo.toml"
mk_version=$(sed -n 's/^PKG_VERSION:=//p' "$PKG_DIR/Makefile")
release=$(sed -n 's/^PKG_RELEASE:=//p' "$PKG_DIR/Makefile")
[[ $mk_version == "$version" ]] ||
    die "openwrt/sdwan-agent/Makefile has PKG_VERSION $mk_version but Cargo.toml says $version"
pkg_version="$version-r$release"
epoch=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# Deterministic tar.gz of the current directory's entries.
tgz() { # OUTFILE ENTRIES...
    local out=$1
    shift
    tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
        --mtime="@$epoch" -cf - "$@" | gzip -9n >"$out"
}

build_one() { # TARGET ARCH
    local t=$1 arch=$2
    local bin=$BIN_DIR/$t/sdwan-agent
    [[ -f $bin ]] || die "$bin is missing: run cross/build.sh $t first"
    local w=$WORK/gateway-$arch
    rm -rf "$w"
    mkdir -p "$w/data" "$w/control" "$w/pkg"

    # data: the same layout as Package/sdwan-agent/install in the feed Makefile.
    local d=$w/data
    install -d -m 0755 "$d/usr/bin" "$d/etc/config" "$d/etc/init.d" "$d/etc/uci-defaults" \
        "$d/etc/capabilities" "$d/etc/sdwan-agent"
    install -m 0755 "$bin" "$d/usr/bin/sdwan-agent"
    install -m 0644 "$FILES/sdwan-agent.config" "$d/etc/config/sdwan-agent"
    install -m 0755 "$FILES/sdwan-agent.init" "$d/etc/init.d/sdwan-agent"
    install -m 0755 "$FILES/sdwan-agent.uci-defaults" "$d/etc/uci-defaults/90-sdwan-agent"
    install -m 0644 "$FILES/sdwan-agent.capabilities.json" "$d/etc/capabilities/sdwan-agent.json"
    (cd "$d" && tgz "$w/pkg/data.tar.gz" .)
    local installed_size
    installed_size=$(gzip -dc "$w/pkg/data.tar.gz" | wc -c)

    # control: fields as the SDK writes them; the scripts are the SDK's standard stubs
    # (default_postinst runs our uci-defaults script, creates the user from Require-User
    # and enables the init script), plus postinst-pkg from the Makefile's postinst.
    local c=$w/control
    cat >"$c/control" <<EOF
Package: sdwan-agent
Version: $pkg_version
Source: feeds/sdwan/sdwan-agent
SourceName: sdwan-agent
License: Apache-2.0
Section: net
SourceDateEpoch: $epoch
Maintainer: sdwan-discovery maintainers
Architecture: $arch
Installed-Size: $installed_size
Require-User: sdwan-agent:sdwan-agent
Description:  Answers DNS for Kubernetes services (<service>.<namespace>.<suffix>, SRV
 records, local.<suffix>) on a branch gateway, from zones an sdwan-discovery master
 publishes over MQTT with TLS. dnsmasq forwards the suffix to it. Static binary.
EOF
    printf '/etc/config/sdwan-agent\n' >"$c/conffiles"
    cat >"$c/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
EOF
    cat >"$c/prerm" <<'EOF'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
EOF
    # The Makefile's Package/sdwan-agent/postinst, which default_postinst sources.
    sed -n '/^define Package\/sdwan-agent\/postinst/,/^endef/p' "$PKG_DIR/Makefile" |
        sed '1d;$d' | sed 's/\$\$/$/g' >"$c/postinst-pkg"
    [[ -s $c/postinst-pkg ]] || die "no Package/sdwan-agent/postinst in the Makefile"
    chmod 0755 "$c/postinst" "$c/prerm" "$c/postinst-pkg"
    chmod 0644 "$c/control" "$c/conffiles"
    (cd "$c" && tgz "$w/pkg/control.tar.gz" .)

    local ipk=$OUT/sdwan-agent_${pkg_version}_${arch}.ipk
    pack "$w" "$ipk"
    printf '%-32s %-26s %s\n' "$t" "$arch" "$ipk"
}

# The worker package: the worker build, a config file and an init script. The same control
# scripts as the gateway package; no user (it runs as root: it writes nginx's directory and
# reloads nginx), no uci-defaults.
build_worker() { # TARGET ARCH
    local t=$1 arch=$2
    local bin=$BIN_DIR/$t/sdwan-agent-worker
    local w=$WORK/worker-$arch
    rm -rf "$w"
    mkdir -p "$w/data" "$w/control" "$w/pkg"
    local d=$w/data
    install -d -m 0755 "$d/usr/bin" "$d/etc/init.d"
    install -m 0755 "$bin" "$d/usr/bin/sdwan-agent-worker"
    install -m 0600 "$WORKER_FILES/sdwan-agent-worker.conf" "$d/etc/sdwan-agent-worker.conf"
    install -m 0755 "$WORKER_FILES/sdwan-agent-worker.init" "$d/etc/init.d/sdwan-agent-worker"
    (cd "$d" && tgz "$w/pkg/data.tar.gz" .)
    local installed_size
    installed_size=$(gzip -dc "$w/pkg/data.tar.gz" | wc -c)
    local c=$w/control
    cat >"$c/control" <<EOF
Package: sdwan-agent-worker
Version: $pkg_version
Source: feeds/sdwan/sdwan-agent
SourceName: sdwan-agent-worker
License: Apache-2.0
Section: net
SourceDateEpoch: $epoch
Maintainer: sdwan-discovery maintainers
Architecture: $arch
Installed-Size: $installed_size
Description:  sdwan-agent's worker mode (built with the worker feature): on a worker node,
 follows the proxy content an sdwan-discovery master publishes over MQTT with TLS and
 writes nginx's configuration and help page, checked and reloaded, rolled back on
 failure. Static binary. Gateways install sdwan-agent instead.
EOF
    printf '/etc/sdwan-agent-worker.conf\n' >"$c/conffiles"
    cp "$WORK/gateway-$arch/control/postinst" "$WORK/gateway-$arch/control/prerm" "$c/"
    chmod 0644 "$c/control" "$c/conffiles"
    (cd "$c" && tgz "$w/pkg/control.tar.gz" .)
    pack "$w" "$OUT/sdwan-agent-worker_${pkg_version}_${arch}.ipk"
    printf '%-32s %-26s %s\n' "$t" "$arch" "$OUT/sdwan-agent-worker_${pkg_version}_${arch}.ipk"
}

# pack WORKDIR IPK: the .ipk from WORKDIR/pkg, and its entry in the feed index.
pack() {
    local w=$1 ipk=$2 c=$1/control
    echo "2.0" >"$w/pkg/debian-binary"
    (cd "$w/pkg" && tar --format=gnu --numeric-owner --owner=0 --group=0 --mtime="@$epoch" \
        -cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -9n >"$ipk.tmp")
    mv "$ipk.tmp" "$ipk"
    # Index entry for a local feed (src/gz ... in /etc/opkg/customfeeds.conf).
    {
        grep -v '^Description:\|^ ' "$c/control"
        echo "Filename: $(basename "$ipk")"
        echo "Size: $(stat -c %s "$ipk")"
        echo "SHA256sum: $(sha256sum "$ipk" | cut -d' ' -f1)"
        sed -n '/^Description:/,$p' "$c/control"
        echo
    } >>"$WORK/Packages"
}

: >"$WORK/Packages"
for t in "${targets[@]}"; do
    build_one "$t" "${ARCH[$t]}"
done
workers=0
for t in "${targets[@]}"; do
    if [[ -f $BIN_DIR/$t/sdwan-agent-worker ]]; then
        build_worker "$t" "${ARCH[$t]}"
        workers=$((workers + 1))
    fi
done
# A full run (no target named) makes the worker packages too.
if [[ ${#requested[@]} -eq 0 && $workers -eq 0 ]]; then
    die "no worker build (cross/<target>/sdwan-agent-worker): run cross/build.sh, which makes them for x86_64 and aarch64"
fi
for pair in ${SDWAN_IPK_EXTRA_ARCH:-}; do
    t=${pair%%=*}
    arch=${pair#*=}
    [[ -n "${ARCH[$t]:-}" && -n $arch && $pair == *=* ]] || die "bad SDWAN_IPK_EXTRA_ARCH entry '$pair' (want target=arch)"
    build_one "$t" "$arch"
done
cp "$WORK/Packages" "$OUT/Packages"
gzip -9nc "$OUT/Packages" >"$OUT/Packages.gz"
echo "openwrt/build-ipk.sh: packages and the feed index (Packages, Packages.gz) are in $OUT"
