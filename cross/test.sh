#!/usr/bin/env bash
# cross/test.sh [TARGET...]
#
# Runs every cross-built sdwan-agent (from cross/build.sh) under qemu-user-static (the
# x86_64 one natively): `--version`, then serves cross/testdata/zone.json on a loopback port
# and checks real `dig` answers over UDP and TCP: A, AAAA, SRV, SOA serial, a TTL over 65535,
# NXDOMAIN. The values are picked so that a byte-order mistake changes them (big-endian mips
# is in the default set on purpose). Then it serves examples/zone.json (when present) and
# checks its local A record. Issue 15: the gateway binary has no worker mode (its --help
# shows no worker flag; --node-id is refused with exit 2 naming the sdwan-agent-worker
# package), and a worker binary (sdwan-agent-worker, where cross/build.sh made one) has it.
# Prints a table; exits non-zero on any failure.
#
# Environment: CARGO_TARGET_DIR (default <repo>/target; binaries in $CARGO_TARGET_DIR/cross).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_TARGETS=(
    x86_64-unknown-linux-musl
    aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf
    mips-unknown-linux-musl
    mipsel-unknown-linux-musl
)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=$CARGO_TARGET_DIR/cross
ZONE=$REPO/cross/testdata/zone.json
EXAMPLE=$REPO/examples/zone.json
SUFFIX=k8s.internal
START_DEADLINE=30 # seconds for an emulated agent to answer its first query

die() {
    echo "cross/test.sh: ERROR: $*" >&2
    exit 1
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

for cmd in dig python3; do
    command -v "$cmd" >/dev/null || die "'$cmd' is not installed (Debian: bind9-dnsutils, python3)"
done

# qemu binary for a target ('' = runs natively here).
runner_for() {
    local arch=${1%%-*} host
    host=$(uname -m)
    [[ $arch == "$host" ]] && return 0
    case "$arch" in
    armv7) arch=arm ;;
    esac
    local q=qemu-$arch-static
    command -v "$q" >/dev/null || die "'$q' is not installed (Debian: qemu-user-static)"
    command -v "$q"
}

WORK=$(mktemp -d)
AGENT_PID=
cleanup() {
    if [[ -n $AGENT_PID ]]; then
        kill "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A port free for both UDP and TCP on 127.0.0.1.
free_port() {
    python3 - <<'EOF'
import socket
for _ in range(50):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        continue
    u.close()
    t.close()
    print(port)
    break
else:
    raise SystemExit("no free port")
EOF
}

FAILS=()
check() { # check NAME GOT WANT
    if [[ "$2" == "$3" ]]; then return 0; fi
    FAILS+=("$1: got '$2', want '$3'")
    return 1
}

# dig against the agent; extra args passed through.
q() { dig @127.0.0.1 -p "$PORT" +time=2 +tries=2 "$@" 2>&1; }

# The worker-mode checks of one binary: gateway (no worker mode) or worker. Sets FAILS.
check_builds() { # KIND RUN...
    local kind=$1 out rc
    shift
    out=$("$@" --help 2>&1) || true
    rc=0
    out2=$("$@" --node-id w1 --proxy-dir /nonexistent-sdwan-proxy --broker mqtt://127.0.0.1:9 2>&1) || rc=$?
    if [[ $kind == gateway ]]; then
        check "gateway --help without --node-id" "$(grep -c -- '--node-id' <<<"$out")" "0" || true
        check "gateway --node-id: exit" "$rc" "2" || true
        check "gateway --node-id: says" "$(grep -c 'gateway build, without worker mode.*sdwan-agent-worker package' <<<"$out2")" "1" || true
    else
        check "worker --help has --node-id" "$(grep -c -- '^  --node-id' <<<"$out")" "1" || true
        check "worker --node-id: exit" "$rc" "1" || true
        check "worker --node-id: says" "$(grep -c 'worker mode: --proxy-dir /nonexistent-sdwan-proxy is not a directory' <<<"$out2")" "1" || true
    fi
}

declare -A res_version res_dns res_detail res_builds
overall=0
for t in "${targets[@]}"; do
    bin=$OUT/$t/sdwan-agent
    res_version[$t]=FAIL
    res_dns[$t]=FAIL
    res_builds[$t]=FAIL
    res_detail[$t]=
    if [[ ! -x $bin ]]; then
        res_detail[$t]="missing $bin (run cross/build.sh $t)"
        overall=1
        continue
    fi
    runner=$(runner_for "$t")
    run=("$bin")
    [[ -n $runner ]] && run=("$runner" "$bin")

    # --version: exit 0 and print something that names the program.
    if ver=$("${run[@]}" --version 2>&1) && [[ $ver == *sdwan-agent* ]]; then
        res_version[$t]="ok ($(echo "$ver" | head -n1 | cut -c1-40))"
    else
        res_detail[$t]="--version: $(echo "$ver" | head -n1 | cut -c1-80)"
        overall=1
        continue
    fi

    # Worker mode only in the worker build.
    FAILS=()
    check_builds gateway "${run[@]}"
    nbuilds=gateway
    worker=$OUT/$t/sdwan-agent-worker
    if [[ -x $worker ]]; then
        wrun=("$worker")
        [[ -n $runner ]] && wrun=("$runner" "$worker")
        check_builds worker "${wrun[@]}"
        nbuilds="gateway+worker"
    fi
    if [[ ${#FAILS[@]} -eq 0 ]]; then
        res_builds[$t]="ok ($nbuilds)"
    else
        res_detail[$t]=$(printf '%s; ' "${FAILS[@]}")
        overall=1
    fi

    PORT=$(free_port)
    log=$WORK/$t.log
    "${run[@]}" --listen "127.0.0.1:$PORT" --zone-file "$ZONE" >"$log" 2>&1 &
    AGENT_PID=$!
    started=0
    deadline=$((SECONDS + START_DEADLINE))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$AGENT_PID" 2>/dev/null; then break; fi
        if q +short "local.$SUFFIX" A | grep -q '^192\.168\.200\.2$'; then
            started=1
            break
        fi
        sleep 0.2
    done
    if [[ $started == 0 ]]; then
        res_detail[$t]="no answer within ${START_DEADLINE}s; agent log: $(tail -n 3 "$log" | tr '\n' ' ' | cut -c1-160)"
        kill "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
        AGENT_PID=
        overall=1
        continue
    fi

    FAILS=()
    check "A local" "$(q +short "local.$SUFFIX" A)" "192.168.200.2" || true
    check "AAAA worker2" "$(q +short "worker2.$SUFFIX" AAAA)" "fd00::1:2" || true
    check "SRV" "$(q +short "_http._tcp.hello-world.default.$SUFFIX" SRV)" "1 2 30080 worker1.$SUFFIX." || true
    check "SOA serial" "$(q +short "$SUFFIX" SOA | awk '{print $3}')" "305419896" || true
    check "TXT apex" "$(q +short "$SUFFIX" TXT)" '"sdwan-discovery"' || true
    check "A over TCP, TTL 70000" "$(q +tcp +noall +answer "hello-world.default.$SUFFIX" A | awk '{print $2, $5}')" "70000 192.168.200.3" || true
    check "mixed case" "$(q +short "LoCaL.K8S.InTeRnAl" A)" "192.168.200.2" || true
    check "NXDOMAIN" "$(q "nope.$SUFFIX" A | sed -n 's/.*status: \([A-Z]*\),.*/\1/p')" "NXDOMAIN" || true
    check "AA flag" "$(q "local.$SUFFIX" A | grep -c 'flags: qr aa')" "1" || true

    kill "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=

    # The bundled example zone (what README's first command serves) loads and answers too.
    nchecks=9
    if [[ -f $EXAMPLE ]]; then
        nchecks=10
        want=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(r["data"] for r in d["records"] if r["name"]=="local" and r["type"]=="A"))' "$EXAMPLE")
        "${run[@]}" --listen "127.0.0.1:$PORT" --zone-file "$EXAMPLE" >"$log.example" 2>&1 &
        AGENT_PID=$!
        got=
        deadline=$((SECONDS + START_DEADLINE))
        while ((SECONDS < deadline)) && kill -0 "$AGENT_PID" 2>/dev/null; do
            got=$(q +short "local.$SUFFIX" A || true)
            [[ $got == "$want" ]] && break
            sleep 0.2
        done
        check "examples/zone.json local A" "$got" "$want" || true
        kill "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
        AGENT_PID=
    fi
    if [[ ${#FAILS[@]} -eq 0 ]]; then
        res_dns[$t]="ok ($nchecks checks)"
    else
        res_detail[$t]+=$(printf '%s; ' "${FAILS[@]}")
        overall=1
    fi
done

echo
printf '%-32s %-30s %-22s %-14s %s\n' target --version "builds" dig detail
for t in "${targets[@]}"; do
    printf '%-32s %-30s %-22s %-14s %s\n' "$t" "${res_version[$t]}" "${res_builds[$t]}" "${res_dns[$t]}" "${res_detail[$t]}"
done
if [[ $overall != 0 ]]; then
    echo "cross/test.sh: FAILED (see the detail column)" >&2
    exit 1
fi
echo "cross/test.sh: all ${#targets[@]} targets answered correctly"
