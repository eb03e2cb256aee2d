#!/usr/bin/env bash
# bench/dns/run.sh: dnsperf against sdwan-agent, Knot DNS and NSD serving the same zone
# (20 and 1,000 records), on loopback, one after the other, with one query file per zone
# (existing names A/AAAA/SRV, AAAA NODATA, NXDOMAIN, SOA; see gen_zone.py).
#
# Reported per server: QPS, average latency, the server's CPU time per query (utime+stime of
# the server's processes from /proc/PID/stat before and after, over queries completed: dnsperf
# itself saturates a core here, so QPS mostly measures dnsperf; split into user and kernel
# time: on loopback the kernel's UDP path dominates), RSS and peak RSS (VmRSS and
# VmHWM, summed over the server's processes), and the response-code mix (it must be the same
# for all three: a server that answers wrongly shows up there).
# Targets (issue 2): agent CPU per query <= half of Knot's; agent RSS <= 2 MiB with 1,000 records.
#
# Environment:
#   SDWAN_AGENT_BIN  agent binary (default: the x86_64 musl one from cross/build.sh, which is
#                    built if missing; it is what a gateway runs: opt-level z, panic abort)
#   BENCH_SECONDS    dnsperf -l per run (default 10)
#   BENCH_SIZES      zone sizes (default "20 1000")
#   BENCH_CLIENTS    dnsperf -c (default 4); dnsperf runs -T 1 -q 100
#   BENCH_SERVERS    servers to run (default "agent knot nsd")
# Exit status: non-zero when a server fails to start or answer correctly, not for missed targets.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/bench/dns
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
SIZES=${BENCH_SIZES:-"20 1000"}
CLIENTS=${BENCH_CLIENTS:-4}
SERVERS=${BENCH_SERVERS:-"agent knot nsd"}
ORIGIN=k8s.internal
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "bench/dns/run.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "bench/dns/run.sh: $*" >&2; }

for cmd in dnsperf knotd nsd dig python3; do
    command -v "$cmd" >/dev/null || die "'$cmd' is not installed (Debian: dnsperf, knot, nsd, bind9-dnsutils, python3)"
done

AGENT=${SDWAN_AGENT_BIN:-}
if [[ " $SERVERS " != *" agent "* ]]; then
    AGENT=/bin/false
elif [[ -z $AGENT ]]; then
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
    AGENT=$CARGO_TARGET_DIR/cross/x86_64-unknown-linux-musl/sdwan-agent
    if [[ ! -x $AGENT ]]; then
        say "building the agent: cross/build.sh x86_64-unknown-linux-musl"
        CARGO_TARGET_DIR=$CARGO_TARGET_DIR "$REPO/cross/build.sh" x86_64-unknown-linux-musl >/dev/null
    fi
fi
[[ -x $AGENT ]] || die "agent binary $AGENT is missing"

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

# wait_ready PORT: the server answers the SOA of the zone with our serial (deadline 20 s).
wait_ready() {
    local port=$1 deadline=$((SECONDS + 20)) got
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        got=$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short "$ORIGIN" SOA 2>/dev/null | awk '{print $3}')
        [[ $got == 2026112801 ]] && return 0
        sleep 0.2
    done
    return 1
}

start_agent() { # DIR PORT
    "$AGENT" --listen "127.0.0.1:$2" --zone-file "$1/payload.json" >"$1/agent.log" 2>&1 &
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
declare -A CPU_US RSS_KIB MIX
run_one() { # SERVER SIZE DIR
    local server=$1 size=$2 dir=$3 port
    port=$(free_port)
    "start_$server" "$dir" "$port"
    if ! wait_ready "$port"; then
        tail -n 5 "$dir"/*.log "$dir"/*/*.log "$dir"/*/*.out 2>/dev/null >&2 || true
        die "$server ($size records) did not answer the SOA on 127.0.0.1:$port"
    fi
    # Check one answer of each kind before measuring anything.
    local a
    a=$(dig @127.0.0.1 -p "$port" +short "_http._tcp.svc1.shop.$ORIGIN" SRV)
    [[ $a == "0 0 30001 worker2.$ORIGIN." ]] || die "$server: wrong SRV answer '$a'"
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
    ROWS+=("| $server | $size | $(printf '%.0f' "$qps") | $(awk -v l="$lat" 'BEGIN { printf "%.3f", l * 1000 }') | $cpu_us | $user_us | $sys_us | ${mem%% *} | ${mem##* } | $lost | $pct |")
    say "$server, $size records: $(printf '%.0f' "$qps") QPS, $cpu_us us CPU/query, RSS ${mem%% *} KiB ($mix)"
}

versions="$(knotd -V | head -n1 | sed 's/.*version /Knot /'), $(nsd -v 2>&1 | head -n1 | sed 's/NSD version /NSD /'), dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p' | head -n1)"
[[ $AGENT == /bin/false ]] || versions="$("$AGENT" --version 2>/dev/null | head -n1), $versions"

for size in $SIZES; do
    dir=$WORK/zone-$size
    python3 "$HERE/gen_zone.py" "$size" "$dir"
    for server in $SERVERS; do
        run_one "$server" "$size" "$dir"
    done
done

echo
echo "DNS benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, dnsperf -l $SECONDS_PER_RUN -c $CLIENTS -T 1 -q 100 on 127.0.0.1"
echo "$versions"
[[ $AGENT == /bin/false ]] || echo "agent binary: $AGENT ($(stat -c %s "$AGENT") bytes)"
echo
echo "| server | records | QPS | avg latency ms | CPU us/query | of it user | of it kernel | RSS KiB | peak RSS KiB | lost | response codes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
for size in $SIZES; do
    [[ -n ${CPU_US[agent.$size]:-} && -n ${CPU_US[knot.$size]:-} ]] || continue
    ratio=$(awk -v a="${CPU_US[agent.$size]}" -v k="${CPU_US[knot.$size]}" 'BEGIN { printf "%.2f", a / k }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 0.5 ? "met" : "MISSED") }')
    echo "target, $size records: agent CPU/query / Knot CPU/query = $ratio (<= 0.50): $verdict"
done
# The same queries must get the same response codes from every server (within 1 point:
# the runs stop at different places in the query file).
status=0
for size in $SIZES; do
    for server in $SERVERS; do
        [[ $server != knot && -n ${MIX[knot.$size]:-} ]] || continue
        if ! python3 - "${MIX[knot.$size]}" "${MIX[$server.$size]}" <<'PY'; then
import sys
ref = dict(kv.split("=") for kv in sys.argv[1].split())
got = dict(kv.split("=") for kv in sys.argv[2].split())
ok = ref.keys() == got.keys() and all(abs(float(ref[k]) - float(got[k])) <= 1.0 for k in ref)
sys.exit(0 if ok else 1)
PY
            echo "MISMATCH, $size records: $server answered ${MIX[$server.$size]}, Knot ${MIX[knot.$size]}" >&2
            status=1
        fi
    done
done
if [[ -n ${RSS_KIB[agent.1000]:-} ]]; then
    rss=${RSS_KIB[agent.1000]}
    echo "target, 1000 records: agent RSS $rss KiB (<= 2048 KiB): $([[ $rss -le 2048 ]] && echo met || echo MISSED)"
fi
exit $status
