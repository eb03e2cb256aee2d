#!/usr/bin/env bash
# openwrt/test-rootfs.sh [TARGET...]   (default: x86_64-unknown-linux-musl mips-unknown-linux-musl)
#
# Gateway image test. For each target's .ipk (openwrt/build-ipk.sh; built here if missing):
#  1. a root made only of busybox-static (no libc, no loader: /lib holds shell test doubles);
#  2. the .ipk unpacked into it with busybox tar, the package user created as the
#     postinst would (Require-User), the UCI config edited as a user would;
#  3. the init script run by busybox sh through test doubles of rc.common/procd/config_load
#     (openwrt/test/stubs): a disabled config must start nothing; the enabled one records
#     the instance procd would start (command line, user, env, respawn, reload trigger);
#  4. that instance started in the root with chroot, as its user, and `dig` answered on loopback;
#  5. the uci-defaults script run twice against a dhcp config (uci test double), then a real
#     dnsmasq with the resulting server=/rebind-domain-ok= lines, stop-dns-rebind and DNSSEC
#     validation on (as OpenWrt's `option dnssec 1` renders it): a private-range answer for
#     the suffix must come through dnsmasq;
#  6. the gateway package's agent refuses worker settings (exit 2), and the worker package
#     (sdwan-agent-worker, where build-ipk.sh made one for the architecture) installs, its init
#     script starts `sdwan-agent-worker --config ...` once node-id is set, and that binary has
#     worker mode.
# Needs root (chroot). Exits non-zero on any failure; cleans up its processes and files.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export CARGO_TARGET_DIR
IPK_DIR=$CARGO_TARGET_DIR/openwrt
STUBS=$REPO/openwrt/test/stubs
ZONE=$REPO/cross/testdata/zone.json
SUFFIX=k8s.internal
BUSYBOX=${BUSYBOX:-/bin/busybox}

declare -A ARCH=(
    [x86_64-unknown-linux-musl]=x86_64
    [aarch64-unknown-linux-musl]=aarch64_generic
    [armv7-unknown-linux-musleabihf]=arm_cortex-a7_neon-vfpv4
    [mips-unknown-linux-musl]=mips_24kc
    [mipsel-unknown-linux-musl]=mipsel_24kc
)

die() {
    echo "openwrt/test-rootfs.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "openwrt/test-rootfs.sh: $*" >&2; }

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(x86_64-unknown-linux-musl mips-unknown-linux-musl)
for t in "${targets[@]}"; do [[ -n "${ARCH[$t]:-}" ]] || die "unknown target '$t'"; done

[[ $(id -u) == 0 ]] || die "needs root (chroot)"
for cmd in dig dnsmasq chroot python3 readelf; do
    command -v "$cmd" >/dev/null || die "'$cmd' is not installed (Debian: bind9-dnsutils, dnsmasq-base, coreutils, python3, binutils)"
done
[[ -x $BUSYBOX ]] || die "$BUSYBOX is missing (Debian: busybox-static)"
if readelf -lW "$BUSYBOX" | grep -q 'program interpreter'; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p); break'
}

# wait_answer PORT NAME TYPE WANT PID...: poll dig until it returns WANT (deadline 30 s),
# giving up early when one of the server PIDs has exited.
wait_answer() {
    local port=$1 name=$2 type=$3 want=$4 got="" deadline=$((SECONDS + 30)) p
    shift 4
    while ((SECONDS < deadline)); do
        for p in "$@"; do
            kill -0 "$p" 2>/dev/null || { echo "  server pid $p exited" >&2; deadline=0; }
        done
        got=$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short "$name" "$type" 2>/dev/null || true)
        [[ $got == "$want" ]] && return 0
        sleep 0.2
    done
    echo "  dig $name $type @127.0.0.1#$port: got '${got//$'\n'/ }', want '$want'" >&2
    return 1
}

failures=()
fail() {
    failures+=("$1: $2")
    echo "  FAIL: $2" >&2
}

test_target() {
    local t=$1 arch=${ARCH[$1]}
    local ipk
    ipk=$(ls "$IPK_DIR"/sdwan-agent_*_"$arch".ipk 2>/dev/null | head -n1 || true)
    if [[ -z $ipk ]]; then
        say "$t: no .ipk yet, building it"
        "$REPO/openwrt/build-ipk.sh" "$t" >/dev/null
        ipk=$(ls "$IPK_DIR"/sdwan-agent_*_"$arch".ipk | head -n1)
    fi
    say "$t: $(basename "$ipk")"
    local root=$WORK/$arch/root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,dev,lib/functions,var/run}
    chmod 1777 "$root/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    chroot "$root" /bin/busybox --install -s
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || : >"$root/dev/null"

    # The package, unpacked by busybox tar as on a router.
    local unpack=$WORK/$arch/ipk
    mkdir -p "$unpack"
    cp "$ipk" "$unpack/pkg.ipk"
    (cd "$unpack" && "$BUSYBOX" tar -xzf pkg.ipk && mkdir control &&
        "$BUSYBOX" tar -xzf control.tar.gz -C control)
    [[ $(cat "$unpack/debian-binary") == 2.0 ]] || fail "$t" "debian-binary is not 2.0"
    grep -qx "Architecture: $arch" "$unpack/control/control" || fail "$t" "control has no 'Architecture: $arch'"
    "$BUSYBOX" tar -xzf "$unpack/data.tar.gz" -C "$root"
    for f in /usr/bin/sdwan-agent /etc/init.d/sdwan-agent /etc/config/sdwan-agent /etc/uci-defaults/90-sdwan-agent; do
        [[ -e $root$f ]] || fail "$t" "package lacks $f"
    done
    if find "$root" -name 'ld-*' -o -name 'libc*' | grep -q .; then
        fail "$t" "the root has a libc or loader; it must not"
    fi

    # Require-User, as default_postinst does it (OpenWrt's group_add/user_add append lines).
    local ru
    ru=$(sed -n 's/^Require-User: *//p' "$unpack/control/control")
    [[ $ru == sdwan-agent:sdwan-agent ]] || fail "$t" "Require-User is '$ru'"
    echo "sdwan-agent:x:1000:" >>"$root/etc/group"
    echo "sdwan-agent:x:1000:1000:sdwan-agent:/var/run:/bin/false" >>"$root/etc/passwd"

    # OpenWrt's shell library and procd, as test doubles.
    cp "$STUBS/functions.sh" "$root/lib/functions.sh"
    cp "$STUBS/uci-parse.awk" "$root/lib/uci-parse.awk"
    cp "$STUBS/procd.sh" "$root/lib/functions/procd.sh"
    install -m 0755 "$STUBS/rc.common" "$root/etc/rc.common"
    install -m 0755 "$STUBS/uci" "$root/sbin/uci"

    # Shipped disabled: starting must start nothing.
    chroot "$root" /etc/init.d/sdwan-agent start 2>"$WORK/$arch/disabled.err" || fail "$t" "init start failed while disabled"
    [[ ! -e $root/tmp/procd/instance ]] || fail "$t" "a disabled agent got a procd instance"
    grep -q 'disabled' "$WORK/$arch/disabled.err" || fail "$t" "no 'disabled' message when disabled"

    # Enable it with a fixed zone file on a free loopback port (as a user would with uci set).
    local port
    port=$(free_port)
    install -m 0644 "$ZONE" "$root/etc/sdwan-agent/zone.json"
    sed -i -e "s|option enabled '0'|option enabled '1'|" \
        -e "s|list listen '127.0.0.1:5353'|list listen '127.0.0.1:$port'|" \
        -e "s|option zone_file ''|option zone_file '/etc/sdwan-agent/zone.json'|" \
        "$root/etc/config/sdwan-agent"
    chroot "$root" /etc/init.d/sdwan-agent start || fail "$t" "init start failed"
    local inst=$root/tmp/procd/instance
    [[ -e $inst/closed ]] || { fail "$t" "init script opened no procd instance"; return; }
    local want_cmd
    want_cmd="/usr/bin/sdwan-agent --listen 127.0.0.1:$port --zone-file /etc/sdwan-agent/zone.json --state-dir /etc/sdwan-agent/state"
    [[ "$(tr '\n' ' ' <"$inst/command" | sed 's/ $//')" == "$want_cmd" ]] ||
        fail "$t" "command line is '$(tr '\n' ' ' <"$inst/command")', want '$want_cmd'"
    [[ $(cat "$inst/user" 2>/dev/null) == sdwan-agent ]] || fail "$t" "procd user is not sdwan-agent"
    [[ $(cat "$inst/respawn" 2>/dev/null) == "3600 5 0" ]] || fail "$t" "no respawn"
    [[ $(cat "$inst/stderr" 2>/dev/null) == 1 ]] || fail "$t" "stderr not sent to the log"
    [[ $(cat "$inst/env" 2>/dev/null) == "RUST_LOG=info" ]] || fail "$t" "env is not RUST_LOG=info"
    grep -qx sdwan-agent "$root/tmp/procd/reload_triggers" 2>/dev/null || fail "$t" "no reload trigger on the sdwan-agent config"
    [[ "$(stat -c %U "$root/etc/sdwan-agent/state" 2>/dev/null || true)" != root ]] ||
        fail "$t" "state dir is not owned by the agent's user"

    # A port below 1024: without ujail the agent starts as root and drops with --user; with
    # ujail procd grants only CAP_NET_BIND_SERVICE. (Rendering only; restored afterwards.)
    cp -a "$inst" "$WORK/$arch/instance.main"
    cp "$root/etc/config/sdwan-agent" "$WORK/$arch/config.main"
    sed -i "s|list listen '127.0.0.1:$port'|list listen '127.0.0.1:53'|" "$root/etc/config/sdwan-agent"
    chroot "$root" /etc/init.d/sdwan-agent start || fail "$t" "init start failed (port 53)"
    [[ "$(tail -n 2 "$inst/command" | tr '\n' ' ')" == "--user sdwan-agent " && ! -e $inst/user ]] ||
        fail "$t" "port 53 without ujail: want root + --user sdwan-agent, got '$(tr '\n' ' ' <"$inst/command")' user '$(cat "$inst/user" 2>/dev/null)'"
    printf '#!/bin/sh\n' >"$root/sbin/ujail" && chmod +x "$root/sbin/ujail"
    chroot "$root" /etc/init.d/sdwan-agent start || fail "$t" "init start failed (port 53, ujail)"
    [[ $(cat "$inst/capabilities" 2>/dev/null) == /etc/capabilities/sdwan-agent.json &&
        $(cat "$inst/user" 2>/dev/null) == sdwan-agent && $(cat "$inst/no_new_privs" 2>/dev/null) == 1 ]] ||
        fail "$t" "port 53 with ujail: want capabilities + user + no_new_privs"
    ! grep -qx -- --user "$inst/command" || fail "$t" "port 53 with ujail: --user should not be passed"
    rm -f "$root/sbin/ujail"
    cp "$WORK/$arch/config.main" "$root/etc/config/sdwan-agent"
    rm -rf "$inst"
    cp -a "$WORK/$arch/instance.main" "$inst"

    # Start it as procd would: that command, as that user, with that env, in the root.
    local uid gid cmd=() emu=()
    uid=$(awk -F: '$1 == "sdwan-agent" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "sdwan-agent" { print $3 }' "$root/etc/group")
    mapfile -t cmd <"$inst/command"
    if [[ ${t%%-*} != "$(uname -m)" ]]; then
        local qarch=${t%%-*}
        [[ $qarch == armv7 ]] && qarch=arm
        local q
        q=$(command -v "qemu-$qarch-static") || die "qemu-$qarch-static is not installed (qemu-user-static)"
        cp "$q" "$root/usr/bin/qemu-static"
        emu=(/usr/bin/qemu-static)
    fi
    chroot --userspec="$uid:$gid" "$root" /bin/busybox env "$(cat "$inst/env")" "${emu[@]}" "${cmd[@]}" \
        >"$WORK/$arch/agent.log" 2>&1 &
    local agent_pid=$!
    PIDS+=("$agent_pid")
    if wait_answer "$port" "local.$SUFFIX" A 192.168.200.2 "$agent_pid"; then
        wait_answer "$port" "_http._tcp.hello-world.default.$SUFFIX" SRV "1 2 30080 worker1.$SUFFIX." "$agent_pid" ||
            fail "$t" "wrong SRV answer from the agent in the busybox root"
    else
        fail "$t" "the agent in the busybox root did not answer; its log: $(tail -n 5 "$WORK/$arch/agent.log" | tr '\n' ' ')"
    fi
    local running_uid
    # chroot and env exec, so the pid is the agent's (or qemu's running it).
    running_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$agent_pid/status" 2>/dev/null || true)
    [[ -z $running_uid || $running_uid == "$uid" ]] || fail "$t" "agent runs as uid $running_uid, want $uid"

    # uci-defaults: dnsmasq forwarding + rebind_domain; run twice (idempotent), with an old
    # forwarding of the suffix to replace and an unrelated server to keep.
    printf '%s\n' 'dhcp.@dnsmasq[0]=dnsmasq' 'dhcp.@dnsmasq[0].server=/lan/192.168.1.2' \
        "dhcp.@dnsmasq[0].server=/$SUFFIX/127.0.0.1#9999" >"$root/tmp/uci-dhcp"
    chroot "$root" /bin/sh /etc/uci-defaults/90-sdwan-agent || fail "$t" "uci-defaults failed"
    chroot "$root" /bin/sh /etc/uci-defaults/90-sdwan-agent || fail "$t" "uci-defaults failed the second time"
    local servers rebind
    servers=$(sed -n 's/^dhcp\.@dnsmasq\[0\]\.server=//p' "$root/tmp/uci-dhcp" | sort | tr '\n' ' ')
    rebind=$(sed -n 's/^dhcp\.@dnsmasq\[0\]\.rebind_domain=//p' "$root/tmp/uci-dhcp" | tr '\n' ' ')
    [[ $servers == "/$SUFFIX/127.0.0.1#$port /lan/192.168.1.2 " ]] ||
        fail "$t" "dnsmasq servers after uci-defaults: '$servers'"
    [[ $rebind == "$SUFFIX " ]] || fail "$t" "rebind_domain after uci-defaults: '$rebind'"

    # A real dnsmasq with what OpenWrt's dnsmasq init renders from those options.
    local dport conf=$WORK/$arch/dnsmasq.conf
    dport=$(free_port)
    {
        echo "port=$dport"
        echo "listen-address=127.0.0.1"
        echo "bind-interfaces"
        echo "no-resolv"
        echo "no-hosts"
        echo "stop-dns-rebind"
        # option dnssec 1 (OpenWrt: /usr/share/dnsmasq/trust-anchors.conf; Debian's copy here)
        echo "dnssec"
        echo "conf-file=/usr/share/dnsmasq-base/trust-anchors.conf"
        echo "dnssec-check-unsigned"
        sed -n 's/^dhcp\.@dnsmasq\[0\]\.server=\(\/'"$SUFFIX"'\/.*\)/server=\1/p' "$root/tmp/uci-dhcp"
        echo "rebind-domain-ok=$rebind" | sed 's/ $//'
    } >"$conf"
    dnsmasq --keep-in-foreground --conf-file="$conf" --pid-file= --user=root --log-facility=- \
        >"$WORK/$arch/dnsmasq.log" 2>&1 &
    local dnsmasq_pid=$!
    PIDS+=("$dnsmasq_pid")
    wait_answer "$dport" "hello-world.default.$SUFFIX" A 192.168.200.3 "$agent_pid" "$dnsmasq_pid" ||
        fail "$t" "dnsmasq did not pass the agent's private answer through (rebind protection?)"

    kill "$agent_pid" 2>/dev/null || true

    # Issue 15: the gateway package holds the gateway build, which has no worker mode.
    local rc=0 out
    out=$(chroot "$root" "${emu[@]}" /usr/bin/sdwan-agent --node-id w1 --proxy-dir /tmp 2>&1) || rc=$?
    [[ $rc == 2 && $out == *"sdwan-agent-worker package"* ]] ||
        fail "$t" "the gateway package's agent took worker settings (exit $rc: $out)"

    # The worker package, where there is one for this architecture: its init script starts
    # nothing until node-id is set, then the worker build with the config file; that binary
    # has worker mode (it reads the file and refuses the missing proxy directory).
    local wipk
    wipk=$(ls "$IPK_DIR"/sdwan-agent-worker_*_"$arch".ipk 2>/dev/null | head -n1 || true)
    [[ -n $wipk ]] || return 0
    say "$t: $(basename "$wipk")"
    local wunpack=$WORK/$arch/worker-ipk
    mkdir -p "$wunpack/control"
    (cd "$wunpack" && "$BUSYBOX" tar -xzf "$wipk" && "$BUSYBOX" tar -xzf control.tar.gz -C control)
    grep -qx "Package: sdwan-agent-worker" "$wunpack/control/control" || fail "$t" "worker control names another package"
    "$BUSYBOX" tar -xzf "$wunpack/data.tar.gz" -C "$root"
    rm -rf "$root/tmp/procd/instance"
    chroot "$root" /etc/init.d/sdwan-agent-worker start 2>"$WORK/$arch/worker.err" || fail "$t" "worker init start failed while not configured"
    [[ ! -e $root/tmp/procd/instance ]] || fail "$t" "an unconfigured worker got a procd instance"
    grep -q 'not configured' "$WORK/$arch/worker.err" || fail "$t" "no 'not configured' message"
    printf 'node-id = w1\nproxy-dir = /etc/nginx/sdwan\nbroker = mqtt://127.0.0.1:9\n' >>"$root/etc/sdwan-agent-worker.conf"
    chroot "$root" /etc/init.d/sdwan-agent-worker start || fail "$t" "worker init start failed"
    local wcmd
    wcmd=$(tr '\n' ' ' <"$inst/command" 2>/dev/null | sed 's/ $//')
    [[ $wcmd == "/usr/bin/sdwan-agent-worker --config /etc/sdwan-agent-worker.conf" ]] ||
        fail "$t" "worker command line is '$wcmd'"
    rc=0
    out=$(chroot "$root" "${emu[@]}" /usr/bin/sdwan-agent-worker --config /etc/sdwan-agent-worker.conf 2>&1) || rc=$?
    [[ $rc == 1 && $out == *"worker mode: --proxy-dir /etc/nginx/sdwan is not a directory"* ]] ||
        fail "$t" "the worker package's agent: exit $rc: $out"
}

for t in "${targets[@]}"; do
    test_target "$t"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
done

if [[ ${#failures[@]} -gt 0 ]]; then
    echo "openwrt/test-rootfs.sh: FAILED:" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "openwrt/test-rootfs.sh: ${#targets[@]} target(s) ok: the .ipk installs into a busybox-only root, its init script starts the agent as sdwan-agent, dig and dnsmasq get the answers"
