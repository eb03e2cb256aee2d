#!/usr/bin/env bash
# The whole pipeline on embedded defaults, on this machine only:
#   sdwan-discovery (embedded MQTT broker on 127.0.0.1:1883, the bundled cluster snapshot
#   examples/cluster.json, topology examples/topology.toml)
#   -> sdwan-agent for gateway gw-espoo, answering DNS on 127.0.0.1:5353.
# Prints dig commands to try, then runs until Ctrl-C.
#
#   examples/demo.sh           run and wait
#   examples/demo.sh --check   run, check the answers a user would check, stop (used by tests)
# SDWAN_BIN_DIR=DIR uses the binaries in DIR instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
check=0
[ "${1:-}" = "--check" ] && check=1

broker=${DEMO_BROKER:-127.0.0.1:1883}
dns=${DEMO_DNS:-127.0.0.1:5353}
dns_ip=${dns%:*}
dns_port=${dns##*:}
gateway=${DEMO_GATEWAY:-gw-espoo}
# The DNS suffix the topology names (docs/topology.md).
suffix=$(sed -n 's/^suffix *= *"\([^"]*\)".*/\1/p' examples/topology.toml)
[ -n "$suffix" ] || { echo "demo: no suffix in examples/topology.toml"; exit 1; }

command -v cargo >/dev/null || { echo "demo: cargo is needed (https://rustup.rs)"; exit 1; }
command -v dig >/dev/null || echo "demo: dig not found (Debian: apt-get install bind9-dnsutils); the printed commands need it"

if [ -n "${SDWAN_BIN_DIR:-}" ]; then
    # Binaries built already (tests/run-all.sh passes the ones its test step built).
    bin=$SDWAN_BIN_DIR
else
    echo "demo: building sdwan-discovery and sdwan-agent (first time takes a few minutes)..."
    cargo build -q -p sdwan-discovery -p sdwan-agent
    bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
fi
for b in sdwan-discovery sdwan-agent; do
    [ -x "$bin/$b" ] || { echo "demo: $bin/$b not found"; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin/sdwan-discovery" run --cluster-file examples/cluster.json --topology examples/topology.toml \
    --embedded-broker "$broker" >"$work/discovery.log" 2>&1 &
pids+=($!)
# The agent keeps the last zone it applied here (and refuses a directory it cannot write).
mkdir -p "$work/state"
# --probe off: the example cluster's workers (192.168.200.x) do not exist here; on a real
# gateway the agent probes them and skips those its branch cannot reach (docs/agent.md).
"$bin/sdwan-agent" --listen "$dns" --broker "mqtt://$broker" --gateway-id "$gateway" \
    --state-dir "$work/state" --probe off >"$work/agent.log" 2>&1 &
pids+=($!)

# Wait (with a deadline) until the agent answers from the zone the master published.
answer=""
for _ in $(seq 1 100); do
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "demo: a process exited early:"; cat "$work"/*.log; exit 1; }
    done
    answer=$(dig +short +time=1 +tries=1 @"$dns_ip" -p "$dns_port" "local.$suffix" A 2>/dev/null || true)
    [ -n "$answer" ] && break
    sleep 0.1
done
if [ -z "$answer" ]; then
    echo "demo: no answer from the agent within 10 s; logs:"
    cat "$work"/*.log
    exit 1
fi

d="dig @$dns_ip -p $dns_port"
cat <<MSG

sdwan-discovery is publishing zones for the bundled example cluster (examples/cluster.json)
through its embedded broker on $broker; sdwan-agent for gateway $gateway answers on $dns.
Try:
MSG
try_this() { printf '  %-62s # %s\n' "$d $1" "$2"; }
try_this "local.$suffix" "nearest Ready worker for $gateway"
try_this "worker3.$suffix AAAA" "a worker by name (worker3 is dual-stack)"
try_this "hello-world.default.$suffix" "nearest node running the service"
try_this "hello-world.$suffix" "the same: the name is unique"
try_this "_http._tcp.hello-world.default.$suffix SRV" "every node, nearest first"
try_this "$suffix SOA" "serial = low 32 bits of the zone's version"
try_this "nope.$suffix" "NXDOMAIN"
try_this "local.$suffix +tcp" "TCP works too"
echo "Logs: $work/discovery.log, $work/agent.log.  Ctrl-C stops both."

if [ "$check" = 1 ]; then
    fail=0
    expect() { # name type -> non-empty answer
        local got
        got=$($d +short "$1" "$2")
        if [ -n "$got" ]; then echo "ok   $1 $2 -> $(echo $got)"; else echo "FAIL $1 $2: no answer"; fail=1; fi
    }
    expect local.$suffix A
    expect hello-world.default.$suffix A
    expect _http._tcp.hello-world.default.$suffix SRV
    expect $suffix SOA
    status=$($d nope.$suffix | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
    if [ "$status" = NXDOMAIN ]; then echo "ok   nope.$suffix -> NXDOMAIN"; else echo "FAIL nope: $status"; fail=1; fi
    for _ in $(seq 1 50); do [ -s "$work/state/zone-v2.jsonl" ] && break; sleep 0.1; done
    if [ -s "$work/state/zone-v2.jsonl" ] && ! grep -q "not persisted" "$work/agent.log"; then
        echo "ok   zone persisted in $work/state"
    else
        echo "FAIL the agent did not persist the zone:"; grep "persist" "$work/agent.log"; fail=1
    fi
    exit $fail
fi
wait
