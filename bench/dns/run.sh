#!/usr/bin/env bash
# bench/dns/run.sh: dnsperf against sdwan-agent, Knot DNS, NSD and dnsmasq serving the same
# zone (20 and 1,000 records), on loopback, one after the other, with one query file per zone
# (existing names A/AAAA/SRV, AAAA NODATA, NXDOMAIN, SOA; see gen_zone.py).
#
# The zone: gen_zone.py makes a cluster of about that many records, `sdwan-discovery plan`
# plans it for one gateway, and every server serves that plan: the agent its payload v2
# snapshot (`agent`, what a gateway serves from the broker; `agent-v1`, optional, the same
# names as a v1 payload), Knot, NSD and dnsmasq the v1 payload's records.
#
# With BENCH_ARCH=mipsel (or mips, armv7, aarch64) the agent and dnsmasq run under
# qemu-<arch>-static: the agent as cross/build.sh builds it for that router CPU, dnsmasq as
# Debian builds it for that architecture (bench/dns/fetch-dnsmasq.sh fetches it), dnsperf
# natively on loopback. Both servers then pay the same emulator, so the ratio between them
# is what to read; absolute times are not those of a router (docs/benchmarks.md).
#
# Reported per server: QPS, average latency, the server's CPU time per query (utime+stime of
# the server's processes from /proc/PID/stat before and after, over queries completed: dnsperf
# itself saturates a core here, so QPS mostly measures dnsperf; split into user and kernel
# time: on loopback the kernel's UDP path dominates), RSS and peak RSS (VmRSS and
# VmHWM, summed over the server's processes), and the response-code mix (it must be the same
# for all three: a server that answers wrongly shows up there).
# Targets: agent CPU per query <= half of Knot's (issue 2) and, under emulation, <= half of
# dnsmasq's (issue 15); agent RSS <= 2 MiB with 1,000 records (natively; under qemu the RSS
# is the emulator's process, guest and translator together).
#
# Environment:
#   SDWAN_AGENT_BIN  agent binary (default: the musl one from cross/build.sh for BENCH_ARCH,
#                    x86_64 natively; built if missing; it is what a gateway runs: opt-level z,
#                    panic abort)
#   SDWAN_DISCOVERY_BIN  sdwan-discovery for `plan` (default: target/debug/sdwan-discovery,
#                    built with cargo if missing)
#   BENCH_ARCH       run the servers under qemu-<arch>-static: mipsel, mips, armv7, aarch64
#                    (default: none, native)
#   BENCH_DNSMASQ_ROOT  under BENCH_ARCH: the unpacked Debian packages of dnsmasq for that
#                    architecture (qemu's -L root; bench/dns/fetch-dnsmasq.sh ARCH DIR makes it,
#                    with Debian's names: mipsel, mips, armhf for armv7, arm64 for aarch64)
#   BENCH_SECONDS    dnsperf -l per run (default 10)
#   BENCH_SIZES      zone sizes (default "20 1000")
#   BENCH_CLIENTS    dnsperf -c (default 4); dnsperf runs -T 1 -q 100
#   BENCH_SERVERS    servers to run (default "agent knot nsd"; "agent dnsmasq" under BENCH_ARCH;
#                    also agent-v1)
#                    The reference for the ratios and the response-code check is Knot when it
#                    runs, else dnsmasq.
# Exit status: non-zero when a server fails to start or answer correctly, not for missed targets.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/bench/dns
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
SIZES=${BENCH_SIZES:-"20 1000"}
CLIENTS=${BENCH_CLIENTS:-4}
ARCH=${BENCH_ARCH:-}
if [[ -n $ARCH ]]; then
    SERVERS=${BENCH_SERVERS:-"agent dnsmasq"}
else
    SERVERS=${BENCH_SERVERS:-"agent knot nsd"}
fi
ORIGIN=k8s.internal
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "bench/dns/run.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "bench/dns/run.sh: $*" >&2; }

for cmd in dnsperf dig python3; do
    command -v "$cmd" >/dev/null || die "'$cmd' is not installed (Debian: dnsperf, bind9-dnsutils, python3)"
done
for server in $SERVERS; do
    case $server in
    agent | agent-v1) ;;
    knot) command -v knotd >/dev/null || die "'knotd' is not installed (Debian: knot)" ;;
    nsd) command -v nsd >/dev/null || die "'nsd' is not installed (Debian: nsd)" ;;
    dnsmasq) [[ -n $ARCH ]] || command -v dnsmasq >/dev/null || die "'dnsmasq' is not installed (Debian: dnsmasq-base)" ;;
    *) die "unknown server '$server' (known: agent agent-v1 knot nsd dnsmasq)" ;;
    esac
done

# EMU: the command prefix that runs a binary of BENCH_ARCH (empty natively).
EMU=()
TRIPLE=x86_64-unknown-linux-musl
DNSMASQ=(dnsmasq)
if [[ -n $ARCH ]]; then
    case $ARCH in
    mipsel | mips | aarch64) TRIPLE=$ARCH-unknown-linux-musl ;;
    armv7) TRIPLE=armv7-unknown-linux-musleabihf ;;
    *) die "BENCH_ARCH=$ARCH: known are mipsel, mips, armv7, aarch64" ;;
    esac
    qemu=qemu-${ARCH/armv7/arm}-static
    command -v "$qemu" >/dev/null || die "'$qemu' is not installed (Debian: qemu-user-static)"
    EMU=("$qemu")
    [[ " $SERVERS " == *" knot "* || " $SERVERS " == *" nsd "* ]] &&
        die "BENCH_ARCH runs the agent and dnsmasq only (BENCH_SERVERS=\"$SERVERS\")"
    if [[ " $SERVERS " == *" dnsmasq "* ]]; then
        ROOT=${BENCH_DNSMASQ_ROOT:-}
        [[ -n $ROOT && -x $ROOT/usr/sbin/dnsmasq ]] ||
            die "BENCH_DNSMASQ_ROOT must hold Debian's $ARCH dnsmasq (usr/sbin/dnsmasq): bench/dns/fetch-dnsmasq.sh $ARCH DIR"
        ROOT=$(cd "$ROOT" && pwd)
        DNSMASQ=("$qemu" -L "$ROOT" "$ROOT/usr/sbin/dnsmasq")
    fi
fi

AGENT=${SDWAN_AGENT_BIN:-}
if [[ " $SERVERS " != *" agent "* && " $SERVERS " != *" agent-v1 "* ]]; then
    AGENT=/bin/false
elif [[ -z $AGENT ]]; then
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
    AGENT=$CARGO_TARGET_DIR/cross/$TRIPLE/sdwan-agent
    if [[ ! -x $AGENT ]]; then
        say "building the agent: cross/build.sh $TRIPLE"
        CARGO_TARGET_DIR=$CARGO_TARGET_DIR "$REPO/cross/build.sh" "$TRIPLE" >/dev/null
    fi
fi
[[ -x $AGENT ]] || die "agent binary $AGENT is missing"
# shellcheck source=bench/dns/zone.sh
. "$HERE/zone.sh"
find_discovery "$REPO" || die "no sdwan-discovery for plan (SDWAN_DISCOVERY_BIN, or cargo build -p sdwan-discovery)"
REF=
for server in knot dnsmasq; do
    if [[ " $SERVERS " == *" $server "* ]]; then
        REF=$server
        break
    fi
done

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
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

# The server's process and its descendants (NSD forks its workers).
tree() {
    local pids=("$1") i=0 p c
    while ((i < ${#pids[@]})); do
        p=${pids[$i]}
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
        i=$((i + 1))
    done
    echo "${pids[@]}"
}

# "UTIME STIME" (clock ticks) summed over the server's processes.
cpu_ticks() {
    local u=0 k=0 p s
    for p in $(tree "$1"); do
        s=$(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null) || continue
        # after "pid (comm) ": field 3 is state, utime/stime are fields 14/15 of stat.
        set -- $s
        u=$((u + ${12}))
        k=$((k + ${13}))
    done
    echo "$u $k"
}

# "RSS_KiB HWM_KiB" summed over the server's processes.
mem_kib() {
    local rss=0 hwm=0 p r h
    for p in $(tree "$1"); do
        r=$(awk '/^VmRSS:/ { print $2 }' /proc/"$p"/status 2>/dev/null || echo 0)
        h=$(awk '/^VmHWM:/ { print $2 }' /proc/"$p"/status 2>/dev/null || echo 0)
        rss=$((rss + ${r:-0}))
        hwm=$((hwm + ${h:-0}))
    done
    echo "$rss $hwm"
}

# wait_ready PORT LOCAL: the server answers `local` with LOCAL, its address (every zone has
# it; dnsmasq has no SOA record to check a serial with), deadline 20 s.
wait_ready() {
    local port=$1 deadline=$((SECONDS + 20)) got
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        got=$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short "local.$ORIGIN" A 2>/dev/null)
        [[ $got == "$2" ]] && return 0
        sleep 0.2
    done
    return 1
}

# --probe off: the planned workers (192.168.x) are not here, and nothing leaves loopback.
start_agent() { # DIR PORT
    "${EMU[@]}" "$AGENT" --listen "127.0.0.1:$2" --zone-file "$1/zone.v2.jsonl" --probe off \
        >"$1/agent.log" 2>&1 &
    SERVER_PID=$!
}

start_agent-v1() { # DIR PORT
    "${EMU[@]}" "$AGENT" --listen "127.0.0.1:$2" --zone-file "$1/payload.json" --probe off \
        >"$1/agent-v1.log" 2>&1 &
    SERVER_PID=$!
}

# dnsmasq as OpenWrt runs it: a caching forwarder that answers the suffix from its own
# records (`local=`), one process, no DHCP; logging to a file, no syslog.
start_dnsmasq() { # DIR PORT
    "${DNSMASQ[@]}" --keep-in-foreground --conf-file="$1/dnsmasq.conf" --port="$2" \
        --listen-address=127.0.0.1 --bind-interfaces --user="$(id -un)" \
        --pid-file="$1/dnsmasq.pid" --log-facility="$1/dnsmasq.log" >"$1/dnsmasq.out" 2>&1 &
    SERVER_PID=$!
}

start_knot() { # DIR PORT
    local d=$1/knot
    mkdir -p "$d/db"
    cp "$1/zone.db" "$d/zone.db"
    cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$d"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
  - domain: $ORIGIN
    file: zone.db
EOF
    knotd -c "$d/knot.conf" >"$d/knot.log" 2>&1 &
    SERVER_PID=$!
}

start_nsd() { # DIR PORT
    local d=$1/nsd
    mkdir -p "$d"
    cp "$1/zone.db" "$d/zone.db"
    cat >"$d/nsd.conf" <<EOF
server:
    server-count: 1
    ip-address: 127.0.0.1@$2
    port: $2
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$d"
    zonelistfile: "$d/zone.list"
    xfrdfile: "$d/xfrd.state"
    xfrdir: "$d"
    pidfile: "$d/nsd.pid"
    logfile: "$d/nsd.log"
    rrl-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: $ORIGIN
    zonefile: zone.db
EOF
    nsd -d -c "$d/nsd.conf" >"$d/nsd.out" 2>&1 &
    SERVER_PID=$!
}

ROWS=()
declare -A CPU_US RSS_KIB MIX NREC
run_one() { # SERVER SIZE DIR
    local server=$1 size=$2 dir=$3 port
    port=$(free_port)
    local expect
    mapfile -t expect <"$dir/expect.txt"
    "start_$server" "$dir" "$port"
    if ! wait_ready "$port" "${expect[0]}"; then
        tail -n 5 "$dir"/*.log "$dir"/*.out "$dir"/*/*.log "$dir"/*/*.out 2>/dev/null >&2 || true
        die "$server ($size records) did not answer local.$ORIGIN on 127.0.0.1:$port"
    fi
    # Check one answer of each kind before measuring anything.
    local a
    a=$(dig @127.0.0.1 -p "$port" +short "${expect[1]}" SRV)
    [[ $a == "${expect[2]}" ]] || die "$server: wrong SRV answer '$a' for ${expect[1]} (want ${expect[2]})"
    a=$(dig @127.0.0.1 -p "$port" "nope.$ORIGIN" A | sed -n 's/.*status: \([A-Z]*\),.*/\1/p')
    [[ $a == NXDOMAIN ]] || die "$server: '$a' for a name that does not exist"

    local t0 t1 out
    t0=$(cpu_ticks "$SERVER_PID")
    out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$dir/queries.txt" -l "$SECONDS_PER_RUN" \
        -c "$CLIENTS" -T 1 -q 100 2>&1) || die "dnsperf failed against $server: $out"
    t1=$(cpu_ticks "$SERVER_PID")
    local mem
    mem=$(mem_kib "$SERVER_PID")
    stop_server
    echo "$out" >"$dir/dnsperf-$server.txt"

    local completed qps lat lost mix
    completed=$(sed -n 's/^ *Queries completed: *\([0-9]*\).*/\1/p' <<<"$out")
    lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' <<<"$out")
    qps=$(sed -n 's/^ *Queries per second: *\([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/^ *Average Latency (s): *\([0-9.]*\).*/\1/p' <<<"$out")
    mix=$(sed -n 's/^ *Response codes: *//p' <<<"$out" | sed 's/ ([0-9.]*%)//g; s/,//g')
    [[ -n $completed && $completed -gt 0 ]] || die "dnsperf completed no query against $server"
    local cpu_us
    local du dk user_us sys_us
    du=$((${t1% *} - ${t0% *}))
    dk=$((${t1#* } - ${t0#* }))
    cpu_us=$(awk -v d=$((du + dk)) -v hz="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    user_us=$(awk -v d="$du" -v hz="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    sys_us=$(awk -v d="$dk" -v hz="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    CPU_US[$server.$size]=$cpu_us
    MIX[$server.$size]=$(sed -n 's/^ *Response codes: *//p' <<<"$out" | sed 's/ [0-9]* (/=/g; s/%)//g; s/,//g')
    RSS_KIB[$server.$size]=${mem%% *}
    local pct
    pct=$(sed -n 's/^ *Response codes: *//p' <<<"$out" | sed 's/[0-9]* (\([0-9.]*%\))/\1/g')
    ROWS+=("| $server | ${NREC[$size]} | $(printf '%.0f' "$qps") | $(awk -v l="$lat" 'BEGIN { printf "%.3f", l * 1000 }') | $cpu_us | $user_us | $sys_us | ${mem%% *} | ${mem##* } | $lost | $pct |")
    say "$server, $size records: $(printf '%.0f' "$qps") QPS, $cpu_us us CPU/query, RSS ${mem%% *} KiB ($mix)"
}

# first_line CMD...: the first line of CMD's output (whatever its exit status; no SIGPIPE).
first_line() { { "$@" 2>&1 || true; } | sed -n 1p; }
versions="dnsperf $({ dnsperf -h 2>&1 || true; } | sed -n 's/^Version //p' | sed -n 1p)"
[[ " $SERVERS " != *" nsd "* ]] || versions="$(first_line nsd -v | sed 's/NSD version /NSD /'), $versions"
[[ " $SERVERS " != *" knot "* ]] || versions="$(first_line knotd -V | sed 's/.*version /Knot /'), $versions"
[[ " $SERVERS " != *" dnsmasq "* ]] ||
    versions="$(first_line "${DNSMASQ[@]}" --version | sed 's/ *Copyright.*//')${ARCH:+ (Debian $ARCH)}, $versions"
[[ $AGENT == /bin/false ]] || versions="$(first_line "${EMU[@]}" "$AGENT" --version), $versions"
[[ -z $ARCH ]] || versions="under $(first_line "${EMU[0]}" --version): $versions"

for size in $SIZES; do
    dir=$WORK/zone-$size
    NREC[$size]=$(make_zone "$size" "$dir") || die "could not make the $size-record zone"
    say "$size records asked: the plan holds ${NREC[$size]}"
    for server in $SERVERS; do
        run_one "$server" "$size" "$dir"
    done
done

echo
echo "DNS benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores${ARCH:+, servers under qemu-user ($ARCH)}, dnsperf -l $SECONDS_PER_RUN -c $CLIENTS -T 1 -q 100 on 127.0.0.1"
echo "$versions"
[[ $AGENT == /bin/false ]] || echo "agent binary: $AGENT ($(stat -c %s "$AGENT") bytes)"
echo
echo "| server | records | QPS | avg latency ms | CPU us/query | of it user | of it kernel | RSS KiB | peak RSS KiB | lost | response codes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
if [[ -n $REF && " $SERVERS " == *" agent "* ]]; then
    echo "| records | agent CPU us/query | $REF CPU us/query | CPU ratio agent/$REF | agent RSS KiB | $REF RSS KiB | RSS ratio agent/$REF |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    for size in $SIZES; do
        a=${CPU_US[agent.$size]} r=${CPU_US[$REF.$size]} ar=${RSS_KIB[agent.$size]} rr=${RSS_KIB[$REF.$size]}
        echo "| ${NREC[$size]} | $a | $r | $(awk -v a="$a" -v r="$r" 'BEGIN { printf "%.2f", a / r }') | $ar | $rr | $(awk -v a="$ar" -v r="$rr" 'BEGIN { printf "%.2f", a / r }') |"
    done
    echo
    for size in $SIZES; do
        ratio=$(awk -v a="${CPU_US[agent.$size]}" -v k="${CPU_US[$REF.$size]}" 'BEGIN { printf "%.2f", a / k }')
        verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 0.5 ? "met" : "MISSED") }')
        echo "target, ${NREC[$size]} records: agent CPU/query / $REF CPU/query = $ratio (<= 0.50): $verdict"
    done
fi
# The same queries must get the same response codes from every server (within 1 point:
# the runs stop at different places in the query file).
status=0
for size in $SIZES; do
    for server in $SERVERS; do
        [[ $server != "$REF" && -n ${MIX[$REF.$size]:-} ]] || continue
        if ! python3 - "${MIX[$REF.$size]}" "${MIX[$server.$size]}" <<'PY'; then
import sys
ref = dict(kv.split("=") for kv in sys.argv[1].split())
got = dict(kv.split("=") for kv in sys.argv[2].split())
ok = ref.keys() == got.keys() and all(abs(float(ref[k]) - float(got[k])) <= 1.0 for k in ref)
sys.exit(0 if ok else 1)
PY
            echo "MISMATCH, $size records: $server answered ${MIX[$server.$size]}, $REF ${MIX[$REF.$size]}" >&2
            status=1
        fi
    done
done
if [[ -n ${RSS_KIB[agent.1000]:-} && -z $ARCH ]]; then
    rss=${RSS_KIB[agent.1000]}
    echo "target, ${NREC[1000]} records: agent RSS $rss KiB (<= 2048 KiB): $([[ $rss -le 2048 ]] && echo met || echo MISSED)"
fi
exit $status
