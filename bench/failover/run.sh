#!/usr/bin/env bash
# Failover benchmark (issue 14, branch autonomy) in the namespace testbed (tests/testbed,
# docs/testbed.md): CUTS times, the path from branch gateway g1 to worker w1 is cut (iptables
# drop in g1's namespace, both ways, IPv4 and IPv6; w1 stays Ready and reachable from the
# central office), and the time from the cut until h1's answer for local.<suffix> moves from
# w1 to w2 is measured (h1 asks g1 with dig, polled every POLL_MS, default 50 ms, plus the dig
# itself). Then the path is restored and the time until the answer is back on w1 is measured
# too; the next cut follows after a seeded random pause of 0-1 s (so the cuts fall at every
# phase of the gateway's probe cycle). Writes results/failover.csv (cut,failover_ms,back_ms)
# and results/table.md (min, p50, p90, p99, max; pasted into docs/benchmarks.md).
#
#   sudo CUTS=50 bench/failover/run.sh
#
# Env: CUTS (default 50), POLL_MS (default 50), BENCH_OUT (results directory), plus the
# testbed's (CARGO_TARGET_DIR / SDWAN_BIN_DIR, TESTBED_PREFIX, STALE_AFTER). Needs what the
# testbed needs, iptables, and an agent that probes (--probe-port).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../tests/testbed/lib.sh"
CUTS=${CUTS:-50}
POLL=$(awk "BEGIN {print ${POLL_MS:-50} / 1000}")
OUT=${BENCH_OUT:-$HERE/results}
NWORKERS=3
RANDOM=14
tb_need || exit 1
agent_probes || { echo "failover: sdwan-agent has no --probe-port flag: gateways do not probe, nothing to measure" >&2; exit 1; }
command -v iptables >/dev/null && command -v ip6tables >/dev/null ||
    { echo "failover: iptables missing (Debian: iptables)" >&2; exit 1; }
mkdir -p "$OUT"
trap 'tb_cleanup' EXIT
trap 'exit 130' INT TERM

tb_setup || { echo "failover: setup failed" >&2; exit 1; }
for i in 1 2 3; do set_node "w$i" True || exit 1; done
add_service default hello 30080 w1 w2 || exit 1
start_backends hello=30080 || exit 1
PROXY=0
if worker_mode_available; then PROXY=1; start_proxies; fi
[ $PROXY = 1 ] || PROBE_PORT=30080
start_master
for g in g1 g2 g3; do start_gateway "$g"; done
W1=$(worker_ip w1) W2=$(worker_ip w2)
wait_for 30 "h1 gets w1 for local.$SUFFIX" bash -c "[ \"\$(ip netns exec $P-h1 dig +short local.$SUFFIX)\" = $W1 ]" || exit 1

# until_answer WANT SECS: polls h1's answer for local.<suffix> every $POLL s; prints the ms from
# $T0 until it is WANT (or "timeout:GOT") and fails on timeout.
until_answer() {
    local got
    while :; do
        got=$(answer h1 "local.$SUFFIX")
        if [ "$got" = "$1" ]; then echo $(( $(now_ms) - T0 )); return 0; fi
        if [ $(( $(now_ms) - T0 )) -gt $(( $2 * 1000 )) ]; then echo "timeout:$got"; return 1; fi
        sleep "$POLL"
    done
}

echo "cut,failover_ms,back_ms" >"$OUT/failover.csv"
failed=0
for i in $(seq 1 "$CUTS"); do
    sleep "$(awk "BEGIN {print $((RANDOM % 1000)) / 1000}")"
    T0=$(now_ms)
    cut_path g1 w1 || exit 1
    f=$(until_answer "$W2" 10) || failed=$((failed + 1))
    restore_path g1 w1
    T0=$(now_ms)
    b=$(until_answer "$W1" 30) || { echo "failover: cut $i: answer not back on w1 ($b)" >&2; exit 1; }
    echo "$i,$f,$b" >>"$OUT/failover.csv"
    echo "cut $i: failover $f ms, back on w1 $b ms" >&2
done

python3 - "$OUT/failover.csv" "$CUTS" "${POLL_MS:-50}" >"$OUT/table.md" <<'PY'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def stats(key):
    v = sorted(int(r[key]) for r in rows if r[key].isdigit())
    q = lambda p: v[max(0, math.ceil(p * len(v)) - 1)]
    return len(v), v[0], q(0.5), q(0.9), q(0.99), v[-1]
print(f"| {len(rows)} cuts of g1 -> w1 (poll {sys.argv[3]} ms) | n | min | p50 | p90 | p99 | max |")
print("|---|---|---|---|---|---|---|")
for key, what in (("failover_ms", "cut to h1 answered w2 (ms)"), ("back_ms", "restore to h1 answered w1 again (ms)")):
    n, *s = stats(key)
    print(f"| {what} | {n} | " + " | ".join(str(x) for x in s) + " |")
PY
cat "$OUT/table.md"
[ "$failed" = 0 ] || { echo "failover: $failed cuts did not fail over within 10 s" >&2; exit 1; }
