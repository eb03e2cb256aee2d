#!/usr/bin/env bash
# bench/dns/guest-profile.sh: how many MIPS instructions the agent executes per query, and in
# which functions, counted by qemu-user itself (no sampling): the agent runs under
# `qemu-<arch>-static -singlestep -d exec,nochain`, which logs every guest instruction it
# executes; QUERIES queries (the benchmark's query file, one at a time, each waiting for its
# answer) are sent once the agent answers, and only the instructions executed while they run
# are counted, then attributed to the binary's symbols.
#
#   CARGO_PROFILE_RELEASE_STRIP=false cross/build.sh mipsel-unknown-linux-musl
#   bench/dns/guest-profile.sh target/mipsel-unknown-linux-musl/release/sdwan-agent
#
# The binary must keep its symbol table (the unstripped one cargo links; cross/build.sh's
# copy under target/cross is stripped). One query at a time means one recvmmsg per query, so
# the per-batch work (the system call wrappers, the zone load) is counted per query here;
# under dnsperf's load it is shared by up to 32 queries.
#
# Env: BENCH_ARCH (default mipsel), QUERIES (default 200), RECORDS (zone size, default 20),
# TOP (functions listed, default 25), PORT (default 5390), ZONE (v2, the default: the payload v2
# snapshot gateways serve; v1: the same plan as a v1 payload), SDWAN_DISCOVERY_BIN (for plan),
# CALLERS (a symbol, e.g. memcpy: also list where its calls come from, per query).
set -euo pipefail

BIN=${1:?usage: guest-profile.sh UNSTRIPPED-AGENT-BINARY}
ARCH=${BENCH_ARCH:-mipsel}
QUERIES=${QUERIES:-200}
RECORDS=${RECORDS:-20}
TOP=${TOP:-25}
PORT=${PORT:-5390}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
qemu=qemu-${ARCH/armv7/arm}-static
NM=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-nm
die() {
    echo "guest-profile.sh: ERROR: $*" >&2
    exit 1
}
command -v "$qemu" >/dev/null || die "'$qemu' is not installed (Debian: qemu-user-static)"
[[ -x $NM ]] || die "llvm-nm missing: rustup component add llvm-tools"
"$NM" "$BIN" >/dev/null 2>&1 || die "$BIN has no symbol table (build with CARGO_PROFILE_RELEASE_STRIP=false)"

WORK=$(mktemp -d)
PID=
cleanup() {
    [[ -z $PID ]] || kill "$PID" 2>/dev/null || true
    [[ -z $PID ]] || wait "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/dns/zone.sh
. "$HERE/zone.sh"
find_discovery "$HERE/../.." || die "no sdwan-discovery for plan (SDWAN_DISCOVERY_BIN)"
make_zone "$RECORDS" "$WORK/zone" >/dev/null || die "could not make the zone"
local_addr=$(sed -n 1p "$WORK/zone/expect.txt")

# The payload v2 snapshot, as a gateway serves it (ZONE=v1: the v1 payload of the same plan).
zone_file=$WORK/zone/zone.v2.jsonl
[[ ${ZONE:-v2} == v1 ]] && zone_file=$WORK/zone/payload.json
"$qemu" -singlestep -d exec,nochain -D "$WORK/exec.log" "$BIN" --listen "127.0.0.1:$PORT" \
    --zone-file "$zone_file" --probe off >"$WORK/agent.log" 2>&1 &
PID=$!
deadline=$((SECONDS + 60))
until [[ $(dig @127.0.0.1 -p "$PORT" +time=1 +tries=1 +short local.k8s.internal A 2>/dev/null) == "$local_addr" ]]; do
    kill -0 "$PID" 2>/dev/null || die "the agent exited: $(tail -3 "$WORK/agent.log")"
    ((SECONDS < deadline)) || die "the agent does not answer on 127.0.0.1:$PORT"
    sleep 0.2
done

"$NM" --print-size --defined-only -C "$BIN" | awk 'NF >= 4' >"$WORK/syms.txt"
python3 - "$WORK" "$PORT" "$QUERIES" "$TOP" <<'EOF'
import bisect, collections, os, socket, struct, sys, time

work, port, n, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
log = os.path.join(work, "exec.log")
types = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28, "SRV": 33}
queries = [l.split() for l in open(os.path.join(work, "zone", "queries.txt"))]

def lines():
    with open(log, "rb") as f:
        return sum(1 for _ in f)

# The other threads (zone watcher, prober) run now and then: their instructions per second,
# measured idle before the queries, are subtracted from the count.
idle0, t0 = lines(), time.monotonic()
time.sleep(2)
idle_rate = (lines() - idle0) / (time.monotonic() - t0)
start, t0 = lines(), time.monotonic()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for i in range(n):
    name, t = queries[i % len(queries)]
    q = struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", types[t], 1)
    s.sendto(q, ("127.0.0.1", port))
    s.recv(65535)
# qemu writes its log through a buffer: give it a moment.
time.sleep(0.5)
end, elapsed = lines(), time.monotonic() - t0
idle = idle_rate * elapsed

syms = []
for l in open(os.path.join(work, "syms.txt")):
    p = l.split(None, 3)
    syms.append((int(p[0], 16), int(p[1], 16), p[3].strip()))
syms.sort()
addrs = [x[0] for x in syms]
per = collections.Counter()
callers = collections.Counter()
of = os.environ.get("CALLERS", "")
prev = "?"
total = 0
with open(log, "rb") as f:
    for i, l in enumerate(f):
        if i < start:
            continue
        if i >= end:
            break
        # "Trace 0: 0x... [flags/PC/...]": the guest PC is the second field.
        try:
            pc = int(l.split(b"/")[1], 16)
        except (IndexError, ValueError):
            continue
        total += 1
        k = bisect.bisect_right(addrs, pc) - 1
        name = syms[k][2] if k >= 0 and pc < syms[k][0] + max(syms[k][1], 1) else "?"
        per[name[:100]] += 1
        if of and name == of and pc == syms[k][0]:
            callers[prev[:100]] += 1
        prev = name
print(f"guest instructions per query: {(total - idle) / n:.0f} ({n} queries, one at a time; "
      f"{idle / n:.0f} per query of the other threads' idle work subtracted, "
      f"{idle_rate:.0f}/s measured before)")
print()
print("| instructions/query | function |")
print("|---:|---|")
for name, c in per.most_common(top):
    print(f"| {c / n:.0f} | `{name}` |")
if of:
    print()
    print(f"| calls of `{of}` per query | from |")
    print("|---:|---|")
    for name, c in callers.most_common(top):
        print(f"| {c / n:.2f} | `{name}` |")
EOF
