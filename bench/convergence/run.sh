#!/usr/bin/env bash
# Convergence benchmark in the namespace testbed (tests/testbed, docs/testbed.md): from the
# change in the Kubernetes API server to the first right DNS answer on a host and the first
# successful HTTP GET from it (to the NodePort, and through nginx on the node when the agent
# has worker mode), for service create and delete, RUNS times each, with 1 and 2 workers. Hosts measured: h1 (gateway g1 on the central broker) and h2 (gateway g2 behind the
# regional broker, bridged over TLS). Writes results/convergence.csv, results/convergence.png,
# results/table.md (pasted into docs/benchmarks.md) and results/cpu.txt (how busy the machine
# was and its CPU steal during each measurement, also printed).
#
#   sudo RUNS=100 bench/convergence/run.sh
#
# Env: BENCH_OUT (results directory), RUNS (default 100), BENCH_PROXY=0 (no nginx and worker agents: DNS and NodePort only), WORKER_COUNTS (default "1 2"), BENCH_VENV (a venv with matplotlib;
# default .venv-bench at the repository root, made here on first use with matplotlib from PyPI),
# plus the testbed's (CARGO_TARGET_DIR / SDWAN_BIN_DIR, TESTBED_PREFIX).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../tests/testbed/lib.sh"
RUNS=${RUNS:-100}
OUT=${BENCH_OUT:-$HERE/results}
mkdir -p "$OUT"
: >"$OUT/convergence.csv"
tb_need || exit 1
trap 'tb_cleanup' EXIT
trap 'exit 130' INT TERM

# The machine's CPU over a measurement, from the first line of /proc/stat: how busy it was and
# how much time the hypervisor ran other guests instead of this one's vCPUs (steal). The tail
# of the convergence times follows the steal on a shared VM (docs/benchmarks.md), so every
# run reports it beside its figures.
cpu_times() { read -r _ user nice system idle iowait irq softirq steal _ </proc/stat; echo "$user $nice $system $idle $iowait $irq $softirq $steal"; }
report_cpu() { # BEFORE AFTER (cpu_times)
    awk -v a="$1" -v b="$2" -v n="$NWORKERS" 'BEGIN {
        split(a, x); split(b, y); for (i = 1; i <= 8; i++) { d[i] = y[i] - x[i]; t += d[i] }
        if (t <= 0) t = 1
        printf "== %s worker(s): CPU busy %.1f %%, idle %.1f %%, steal %.1f %% (/proc/stat over the measurement)\n",
            n, 100 * (d[1] + d[2] + d[3] + d[6] + d[7]) / t, 100 * (d[4] + d[5]) / t, 100 * d[8] / t }'
}
: >"$OUT/cpu.txt"

for NWORKERS in ${WORKER_COUNTS:-1 2}; do
    tb_setup || { echo "setup failed"; exit 1; }
    for i in $(seq 1 "$NWORKERS"); do set_node "w$i" True || exit 1; done
    start_backends bench=30090 || exit 1
    PROXY=0
    if [ "${BENCH_PROXY:-1}" = 1 ] && worker_mode_available; then PROXY=1; start_proxies; fi
    start_master
    for g in g1 g2 g3; do start_gateway "$g"; done
    wait_for 30 "g1 and g2 serve local." bash -c "[ \"\$(ip netns exec $P-h1 dig +short local.$SUFFIX)\" = 10.77.0.11 ] && [ -n \"\$(ip netns exec $P-h2 dig +short local.$SUFFIX)\" ]" || exit 1
    echo "== $NWORKERS worker(s), $RUNS runs" >&2
    before=$(cpu_times)
    "$BIN/sdwan-testbed" measure "$API" "$P" "$RUNS" "$NWORKERS" "$PROXY" "$OUT/convergence.csv" h1:10.77.11.1 h2:10.77.12.1 || exit 1
    report_cpu "$before" "$(cpu_times)" | tee -a "$OUT/cpu.txt" >&2
    tb_cleanup
    PIDS=()
done
VENV=${BENCH_VENV:-$HERE/../../.venv-bench}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib || exit 1
fi
"$VENV/bin/python" "$HERE/report.py" "$OUT/convergence.csv" "$OUT/convergence.png" >"$OUT/table.md" || exit 1
cat "$OUT/table.md"
