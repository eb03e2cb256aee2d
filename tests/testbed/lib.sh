# Shared pieces of the namespace testbed (sourced by tests/testbed/run.sh and
# bench/convergence/run.sh): the topology, the processes, clean-up, assertions.
#
# Topology (docs/testbed.md has the picture):
#   $P-wan           one Linux bridge "br0"; every site has a veth "wan0" on it (10.77.0.0/24)
#   $P-co            central office 10.77.0.1: mosquitto (TLS, 8883), sdwan-discovery, fake API
#                    server (127.0.0.1 of that namespace)
#   $P-rg            regional broker 10.77.0.2: mosquitto (TLS, 8883) bridged over TLS to 10.77.0.1
#   $P-w1..wN        workers 10.77.0.11.. : backend HTTP services on their NodePorts (+ nginx and
#                    the worker agent once worker mode exists)
#   $P-g1..g3        branch gateways, wan 10.77.0.21..23, lan 10.77.11.1 .. 10.77.13.1: sdwan-agent
#                    on lan:53; g1 uses the central broker, g2 and g3 the regional one
#   $P-h1..h3        hosts 10.77.11.10 .. 10.77.13.10, resolver = their gateway
#                    (/etc/netns/$P-hI/resolv.conf)
# The network is dual-stack: every address 10.77.X.Y also has 2001:db8:77:X::Y (documentation
# prefix, global scope, so the hosts prefer IPv6 as real dual-stack branch hosts do (RFC 6724);
# the WAN is 2001:db8:77::Y). Which workers the cluster lists with an IPv6 InternalIP is
# DUAL_STACK_WORKERS. Only routes inside 10.77.0.0/16 and 2001:db8:77::/48 exist in the
# namespaces: nothing can leave them.

P=${TESTBED_PREFIX:-sdtb}
SUFFIX=k8s.internal
PREFIX_TOPIC=sdwan/v1/testbed
NWORKERS=${NWORKERS:-3}
# Workers whose Node lists an IPv6 InternalIP (2001:db8:77::1I) besides the IPv4 one (issue 13).
DUAL_STACK_WORKERS=${DUAL_STACK_WORKERS:-w2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${SDWAN_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
TESTBED_DIR=$ROOT/tests/testbed
W=""          # work dir, made by tb_setup
API=""        # fake API server URL (inside $P-co)

declare -A PIDS=()

nsx() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

tb_log() { echo "testbed: $*" >&2; }

tb_need() {
    local missing=()
    [ "$(id -u)" = 0 ] || { echo "testbed: needs root (network namespaces); CI runs it as root" >&2; return 1; }
    for t in ip mosquitto dig curl python3 nginx timeout; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    for b in sdwan-agent sdwan-discovery sdwan-testbed; do
        [ -x "$BIN/$b" ] || missing+=("$BIN/$b (cargo build -p sdwan-agent -p sdwan-discovery -p sdwan-testbed --features sdwan-agent/worker)")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "testbed: missing: ${missing[*]} (Debian: iproute2 mosquitto bind9-dnsutils curl python3 nginx-light coreutils)" >&2
        return 1
    fi
}

# start NAME NS CMD...: runs CMD in namespace NS in the background, logs to $W/log/NAME.log.
start() {
    local name=$1 ns=$2; shift 2
    ip netns exec "$P-$ns" "$@" >>"$W/log/$name.log" 2>&1 </dev/null &
    PIDS[$name]=$!
}

stop() {
    local name=$1 pid=${PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    local i
    for i in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "PIDS[$name]"
}

tb_cleanup() {
    local name
    for name in "${!PIDS[@]}"; do stop "$name"; done
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-"); do
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf /etc/netns/"$P"-h* /etc/netns/"$P"-w*
    if [ -n "$W" ] && [ "${KEEP_WORKDIR:-0}" != 1 ]; then rm -rf "$W"; fi
}

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s%N)" -gt "$deadline" ]; then
            tb_log "timed out after ${secs}s waiting for: $what"
            return 1
        fi
        sleep 0.02
    done
}

worker_ip() { echo "10.77.0.1${1#w}"; }
worker_ip6() { echo "2001:db8:77::1${1#w}"; }
gw_lan() { echo "10.77.1${1#g}.1"; }

tb_net() {
    ip netns add "$P-wan"
    nsx wan ip link add br0 type bridge
    nsx wan ip link set br0 up
    nsx wan ip link set lo up
    local sites=("co:10.77.0.1" "rg:10.77.0.2") i
    for i in $(seq 1 "$NWORKERS"); do sites+=("w$i:$(worker_ip w$i)"); done
    for i in 1 2 3; do sites+=("g$i:10.77.0.2$i"); done
    local s name addr
    for s in "${sites[@]}"; do
        name=${s%%:*} addr=${s#*:}
        ip netns add "$P-$name"
        ip link add wan0 netns "$P-$name" type veth peer name "$name" netns "$P-wan"
        nsx wan ip link set "$name" master br0 up
        nsx "$name" ip link set lo up
        nsx "$name" ip addr add "$addr/24" dev wan0
        nsx "$name" ip -6 addr add "2001:db8:77::${addr##*.}/64" dev wan0 nodad
        nsx "$name" ip link set wan0 up
    done
    for i in 1 2 3; do
        ip netns add "$P-h$i"
        ip link add lan0 netns "$P-g$i" type veth peer name lan0 netns "$P-h$i"
        nsx "g$i" ip addr add "10.77.1$i.1/24" dev lan0
        nsx "g$i" ip link set lan0 up
        nsx "g$i" ip -6 addr add "2001:db8:77:1$i::1/64" dev lan0 nodad
        nsx "g$i" sysctl -qw net.ipv4.ip_forward=1
        nsx "g$i" sysctl -qw net.ipv6.conf.all.forwarding=1
        nsx "h$i" ip link set lo up
        nsx "h$i" ip addr add "10.77.1$i.10/24" dev lan0
        nsx "h$i" ip -6 addr add "2001:db8:77:1$i::10/64" dev lan0 nodad
        nsx "h$i" ip link set lan0 up
        nsx "h$i" ip route add 10.77.0.0/16 via "10.77.1$i.1"
        nsx "h$i" ip -6 route add 2001:db8:77::/64 via "2001:db8:77:1$i::1"
        mkdir -p "/etc/netns/$P-h$i"
        echo "nameserver 10.77.1$i.1" >"/etc/netns/$P-h$i/resolv.conf"
        # Every site on the WAN reaches the hosts through their gateway.
        for s in "${sites[@]}"; do
            name=${s%%:*}
            case $name in g*) continue ;; esac
            nsx "$name" ip route add "10.77.1$i.0/24" via "10.77.0.2$i"
            nsx "$name" ip -6 route add "2001:db8:77:1$i::/64" via "2001:db8:77::2$i"
        done
    done
}

tb_certs() {
    local specs=("server:central:10.77.0.1" "server:region:10.77.0.2" "client:master" "client:region-bridge")
    local i
    for i in 1 2 3; do specs+=("client:g$i"); done
    for i in $(seq 1 "$NWORKERS"); do specs+=("client:w$i"); done
    "$BIN/sdwan-testbed" certs "$W/certs" "${specs[@]}"
}

broker_conf() { # NAME ADDR [bridge]
    local name=$1 addr=$2 c=$W/certs
    cat <<EOF
per_listener_settings false
user root
log_dest file $W/log/mosquitto-$name.file.log
log_type error
log_type warning
log_type notice
connection_messages true
set_tcp_nodelay true
persistence false
listener 8883 $addr
cafile $c/ca.pem
certfile $c/$name.pem
keyfile $c/$name.key
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file $W/$name.acl
EOF
    if [ "${3:-}" = bridge ]; then
        cat <<EOF
connection central
address 10.77.0.1:8883
bridge_cafile $c/ca.pem
bridge_certfile $c/region-bridge.pem
bridge_keyfile $c/region-bridge.key
remote_clientid sdtb-region-bridge
notifications false
restart_timeout 1
cleansession true
topic $PREFIX_TOPIC/gateways/+/zone in 1
topic $PREFIX_TOPIC/gateways/+/v2/# in 1
topic $PREFIX_TOPIC/gateways/+/status out 1
EOF
    fi
}

tb_brokers() {
    local acl="pattern read $PREFIX_TOPIC/gateways/%u/zone
pattern read $PREFIX_TOPIC/gateways/%u/v2/#
pattern write $PREFIX_TOPIC/gateways/%u/status
pattern read $PREFIX_TOPIC/nodes/%u/proxy
pattern read $PREFIX_TOPIC/nodes/%u/v2/#
pattern write $PREFIX_TOPIC/nodes/%u/status
"
    printf '%s\nuser master\ntopic readwrite %s/gateways/+/zone\ntopic readwrite %s/gateways/+/v2/#\ntopic read %s/gateways/+/status\ntopic readwrite %s/nodes/+/proxy\ntopic readwrite %s/nodes/+/v2/#\ntopic read %s/nodes/+/status\n\nuser region-bridge\ntopic read %s/gateways/g2/zone\ntopic read %s/gateways/g3/zone\ntopic read %s/gateways/g2/v2/#\ntopic read %s/gateways/g3/v2/#\ntopic write %s/gateways/g2/status\ntopic write %s/gateways/g3/status\n' \
        "$acl" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" "$PREFIX_TOPIC" >"$W/central.acl"
    printf '%s' "$acl" >"$W/region.acl"
    broker_conf central 10.77.0.1 >"$W/central.conf"
    broker_conf region 10.77.0.2 bridge >"$W/region.conf"
    start_broker central
    start_broker region
}

tcp_open() { # NS ADDR PORT
    nsx "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

tcp_state() { # NS ADDR PORT: "open" when a connection succeeds within 1 s, else "closed"
    if timeout 1 ip netns exec "$P-$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then
        echo open
    else
        echo closed
    fi
}

start_broker() {
    local name=$1 ns addr
    case $name in central) ns=co addr=10.77.0.1 ;; region) ns=rg addr=10.77.0.2 ;; esac
    start "mosquitto-$name" "$ns" mosquitto -c "$W/$name.conf"
    wait_for 10 "mosquitto $name listening on $addr:8883" tcp_open "$ns" "$addr" 8883
}

tb_apiserver() {
    start apiserver co "$BIN/sdwan-testbed" apiserver "$W/kubeconfig"
    wait_for 10 "fake API server kubeconfig" test -s "$W/kubeconfig" || return 1
    API=$(awk '/server:/ {print $2}' "$W/kubeconfig")
}

# api METHOD PATH [JSON]: one request to the fake API server (from inside $P-co).
api() {
    local method=$1 path=$2 body=${3:-}
    if [ -n "$body" ]; then
        nsx co curl -sS -f -o /dev/null -X "$method" -H 'Content-Type: application/json' --data-binary "$body" "$API$path"
    else
        nsx co curl -sS -f -o /dev/null -X "$method" "$API$path"
    fi
}

node_json() { # NAME IP READY(True|False) [IPV6]
    local v6=""
    [ -n "${4:-}" ] && v6=",{\"type\":\"InternalIP\",\"address\":\"$4\"}"
    printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","labels":{"kubernetes.io/hostname":"%s"}},"status":{"conditions":[{"type":"Ready","status":"%s","reason":"KubeletReady","message":"kubelet"}],"addresses":[{"type":"InternalIP","address":"%s"}%s,{"type":"Hostname","address":"%s"}]}}' \
        "$1" "$1" "$3" "$2" "$v6" "$1"
}

set_node() { # NAME READY
    local ip ip6=""
    ip=$(worker_ip "$1")
    case " $DUAL_STACK_WORKERS " in *" $1 "*) ip6=$(worker_ip6 "$1") ;; esac
    api PUT "/api/v1/nodes/$1" "$(node_json "$1" "$ip" "$2" "$ip6")" 2>/dev/null ||
        api POST /api/v1/nodes "$(node_json "$1" "$ip" "$2" "$ip6")"
}

# add_service NS NAME NODEPORT NODE...: a NodePort service and its EndpointSlice.
add_service() {
    local ns=$1 name=$2 port=$3; shift 3
    local eps="" n i=0
    for n in "$@"; do
        [ -n "$eps" ] && eps+=","
        eps+="{\"addresses\":[\"10.244.$i.$((RANDOM % 200 + 2))\"],\"nodeName\":\"$n\",\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false}}"
        i=$((i + 1))
    done
    api POST "/api/v1/namespaces/$ns/services" \
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"$name\",\"namespace\":\"$ns\"},\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.10\",\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,\"targetPort\":8080,\"nodePort\":$port}]}}" &&
        api POST "/apis/discovery.k8s.io/v1/namespaces/$ns/endpointslices" \
            "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"$name-abcde\",\"namespace\":\"$ns\",\"labels\":{\"kubernetes.io/service-name\":\"$name\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":8080}],\"endpoints\":[$eps]}"
}

del_service() { # NS NAME
    api DELETE "/apis/discovery.k8s.io/v1/namespaces/$1/endpointslices/$2-abcde" &&
        api DELETE "/api/v1/namespaces/$1/services/$2"
}

tb_topology() {
    local order1="" order2="" order3="" i
    # g1 prefers w1, g2 prefers w2, g3 prefers the last worker; then the rest by name.
    for i in $(seq 1 "$NWORKERS"); do order1+="\"w$i\", "; done
    for i in $(seq 2 "$NWORKERS") 1; do order2+="\"w$i\", "; done
    for i in $(seq "$NWORKERS" -1 1); do order3+="\"w$i\", "; done
    cat >"$W/topology.toml" <<EOF
suffix = "$SUFFIX"
service_ttl = 0
ttl = 0

[[gateway]]
id = "g1"
near = [${order1%, }]

[[gateway]]
id = "g2"
near = [${order2%, }]

[[gateway]]
id = "g3"
near = [${order3%, }]
family = "ipv4"
EOF
}

start_master() {
    local c=$W/certs
    start master co env RUST_LOG=info "$BIN/sdwan-discovery" run --topology "$W/topology.toml" \
        --kubeconfig "$W/kubeconfig" --cluster testbed --broker mqtts://10.77.0.1:8883 \
        --ca "$c/ca.pem" --cert "$c/master.pem" --key "$c/master.key" --metrics 127.0.0.1:9100 \
        --debounce "${DEBOUNCE_MS:-20}"
}

gw_broker() { case $1 in g1) echo 10.77.0.1 ;; *) echo 10.77.0.2 ;; esac; }

# Branch autonomy (issue 14): the gateways probe their workers when the agent can. STALE_AFTER
# (seconds without the broker before answers carry EDE 3) is short here; PROBE_PORT, when set,
# overrides the port from the zone (the workers' nginx port; run.sh sets it to a NodePort when
# there is no nginx).
STALE_AFTER=${STALE_AFTER:-5}
PROBE_PORT=${PROBE_PORT:-}

# The agent probes its workers (issue 14) when it has the --probe-port flag.
agent_probes() {
    timeout 5 "$BIN/sdwan-agent" --help 2>&1 </dev/null | grep -q -- '--probe-port'
}

start_gateway() { # gI
    local g=$1 c=$W/certs probe=()
    mkdir -p "$W/state-$g"
    if agent_probes; then
        probe=(--stale-after "$STALE_AFTER")
        [ -n "$PROBE_PORT" ] && probe+=(--probe-port "$PROBE_PORT")
    fi
    start "agent-$g" "$g" env RUST_LOG=info "$BIN/sdwan-agent" --listen "$(gw_lan "$g"):53" \
        --broker "mqtts://$(gw_broker "$g"):8883" --gateway-id "$g" --topic-prefix "$PREFIX_TOPIC" \
        --ca "$c/ca.pem" --cert "$c/$g.pem" --key "$c/$g.key" --state-dir "$W/state-$g" "${probe[@]}"
}

# cut_path GW WORKER [LOSS]: in GW's namespace, drops the packets between the gateway (and the
# hosts behind it) and WORKER's addresses (IPv4 and IPv6), both ways: all of them (a broken
# tunnel: silent, no ICMP), or LOSS percent of them at random in each direction. Only that
# path: the master, the brokers and the other gateways still reach the worker. One iptables
# chain per worker (SDTB-CUT-wI), hooked into INPUT, OUTPUT and FORWARD; restore_path empties it.
cut_path() {
    local g=$1 w=$2 loss=${3:-} t cmd addr chain=SDTB-CUT-$2 hook m=()
    [ -n "$loss" ] && m=(-m statistic --mode random --probability "$(awk "BEGIN {print $loss / 100}")")
    restore_path "$g" "$w"
    for t in "iptables=$(worker_ip "$w")" "ip6tables=$(worker_ip6 "$w")"; do
        cmd=${t%%=*} addr=${t#*=}
        nsx "$g" "$cmd" -N "$chain" 2>/dev/null
        nsx "$g" "$cmd" -A "$chain" -d "$addr" "${m[@]}" -j DROP || return 1
        nsx "$g" "$cmd" -A "$chain" -s "$addr" "${m[@]}" -j DROP || return 1
        for hook in INPUT OUTPUT FORWARD; do
            nsx "$g" "$cmd" -C "$hook" -j "$chain" 2>/dev/null || nsx "$g" "$cmd" -A "$hook" -j "$chain" || return 1
        done
    done
}

restore_path() { # GW WORKER
    local cmd
    for cmd in iptables ip6tables; do
        nsx "$1" "$cmd" -F "SDTB-CUT-$2" 2>/dev/null
    done
    return 0
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# answer_within HOST NAME WANT SECS: polls (every 20 ms) until the host's resolver answers
# WANT; prints the milliseconds it took, or "timeout (got X)" and fails.
answer_within() {
    local host=$1 name=$2 want=$3 secs=$4 got t0
    t0=$(now_ms)
    while :; do
        got=$(answer "$host" "$name")
        if [ "$got" = "$want" ]; then echo $(( $(now_ms) - t0 )); return 0; fi
        if [ $(( $(now_ms) - t0 )) -gt $(( secs * 1000 )) ]; then echo "timeout (got $got)"; return 1; fi
        sleep 0.02
    done
}

# metric LINE_PREFIX: the master's /metrics line starting with LINE_PREFIX (e.g.
# 'sdwan_gateway_worker_down{gateway="g1",worker="w1"}'), or "absent".
metric() {
    local line
    line=$(nsx co curl -sS -m 2 http://127.0.0.1:9100/metrics 2>/dev/null |
        awk -v p="$1 " 'index($0, p) == 1 {print; exit}')
    echo "${line:-absent}"
}

log_count() { # NAME TEXT: how many lines of process NAME's log contain TEXT
    grep -cF -- "$2" "$W/log/$1.log"
}

# stale_view HOST NAME: what a validating client sees of the answer's staleness: "EDE N" (or
# "no EDE") and "TTL <= 30" (or "TTL N", the largest).
stale_view() {
    local out ede ttl
    out=$(nsx "$1" dig +dnssec +tries=1 +time=1 "$2" A 2>&1)
    ede=$(sed -n 's/.*EDE: \([0-9]*\).*/\1/p' <<<"$out" | head -1)
    ttl=$(grep -v '^;' <<<"$out" | awk 'NF >= 5 && $4 == "A" {print $2}' | sort -n | tail -1)
    if [ -n "$ede" ]; then printf 'EDE %s' "$ede"; else printf 'no EDE'; fi
    if [ -n "$ttl" ] && [ "$ttl" -le 30 ]; then echo ", TTL <= 30"; else echo ", TTL ${ttl:-none}"; fi
}

# Backend HTTP services: one process per worker answering on every NodePort of the scenario.
start_backends() {
    local i
    for i in $(seq 1 "$NWORKERS"); do
        start "backend-w$i" "w$i" python3 "$TESTBED_DIR/backend.py" "w$i" :: "$@"
    done
    for i in $(seq 1 "$NWORKERS"); do
        local spec=$1
        wait_for 10 "backend on w$i port ${spec#*=}" tcp_open "w$i" "$(worker_ip "w$i")" "${spec#*=}" || return 1
    done
}

# nginx and the worker agent (issue 5) on each worker. /etc/netns/$P-wI/nginx is what
# /etc/nginx is inside that namespace (ip netns exec bind-mounts it), so every worker has its
# own /etc/nginx/sdwan, the directory the master renders for (topology [proxy] dir default).
start_proxies() {
    local i c=$W/certs
    for i in $(seq 1 "$NWORKERS"); do
        local d=/etc/netns/$P-w$i/nginx
        mkdir -p "$d/sdwan"
        cat >"$d/nginx.conf" <<EOF
daemon off;
user root;
worker_processes 1;
pid /etc/nginx/nginx.pid;
error_log /etc/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    include /etc/nginx/sdwan/*.conf;
}
EOF
        start "nginx-w$i" "w$i" nginx -c /etc/nginx/nginx.conf
        start "worker-agent-w$i" "w$i" env RUST_LOG=info "$BIN/sdwan-agent" \
            --node-id "w$i" --proxy-dir /etc/nginx/sdwan \
            --check-cmd "nginx -t -q -c /etc/nginx/nginx.conf" \
            --reload-cmd "nginx -s reload -c /etc/nginx/nginx.conf" \
            --broker mqtts://10.77.0.1:8883 --topic-prefix "$PREFIX_TOPIC" \
            --ca "$c/ca.pem" --cert "$c/w$i.pem" --key "$c/w$i.key"
    done
}

# Worker mode of the agent (issue 5) is there when --node-id is accepted (a gateway build,
# without the `worker` feature, refuses it: issue 15).
worker_mode_available() {
    local out
    out=$(timeout 5 "$BIN/sdwan-agent" --node-id probe --proxy-dir /nonexistent-sdtb --gateway-id x 2>&1 </dev/null | head -5)
    ! grep -qi "not implemented\\|without worker mode" <<<"$out"
}

# answer HOST NAME [TYPE]: what the host's resolver says: sorted answers, or the rcode
# (NXDOMAIN, REFUSED, ...) when it is not NOERROR, or "none" for an empty NOERROR.
answer() {
    local out status
    out=$(nsx "$1" dig +tries=1 +time=1 +noall +comments +answer "$2" "${3:-A}" 2>&1) || { echo "dig-failed"; return; }
    status=$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out" | head -1)
    if [ "$status" != NOERROR ]; then echo "${status:-no-answer}"; return; fi
    local data
    data=$(grep -v '^;' <<<"$out" | awk 'NF>=5 {print $5}' | sort | tr '\n' ' ')
    echo "${data% }" | sed 's/^$/none/'
}

PASSED=0 FAILED=0 SKIPPED=0
ok() { PASSED=$((PASSED + 1)); echo "ok   $*"; }
notok() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "skip $*"; }

# expect_dns HOST NAME WANT [SECS]: polls until the host's resolver answers WANT.
expect_dns() {
    local host=$1 name=$2 want=$3 secs=${4:-10} got
    local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    while :; do
        got=$(answer "$host" "$name")
        if [ "$got" = "$want" ]; then ok "$host: $name -> $want"; return 0; fi
        if [ "$(date +%s%N)" -gt "$deadline" ]; then
            notok "$host: $name: want $want, got $got (after ${secs}s)"
            return 1
        fi
        sleep 0.02
    done
}

# expect_out WHAT WANT SECS CMD...: polls until CMD's output (trimmed) is WANT.
expect_out() {
    local what=$1 want=$2 secs=$3 got; shift 3
    local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    while :; do
        got=$("$@" 2>&1 | tr '\n' ' ' | sed 's/ *$//')
        if [ "$got" = "$want" ]; then ok "$what -> $want"; return 0; fi
        if [ "$(date +%s%N)" -gt "$deadline" ]; then
            notok "$what: want $want, got $got (after ${secs}s)"
            return 1
        fi
        sleep 0.02
    done
}

# ahosts HOST NAME: the addresses the host's libc resolver gives for NAME (getaddrinfo with
# AF_UNSPEC, as a dual-stack application asks), distinct, in the order given.
ahosts() {
    nsx "$1" getent ahosts "$2" | awk '!seen[$1]++ {print $1}'
}

# reached HOST URL: the address curl connected to (its own happy eyeballs over what the host's
# resolver gives), then the body.
reached() {
    nsx "$1" curl -sS -m 2 -w '%{remote_ip} ' -o "$W/reached.body" "$2" && cat "$W/reached.body"
}

# expect_http HOST URL GREP [SECS]: polls until curl from the host returns a body matching GREP.
expect_http() {
    local host=$1 url=$2 want=$3 secs=${4:-10} body
    local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    while :; do
        body=$(nsx "$host" curl -sS -m 2 "$url" 2>&1)
        if grep -q -- "$want" <<<"$body"; then ok "$host: curl $url ~ $want"; return 0; fi
        if [ "$(date +%s%N)" -gt "$deadline" ]; then
            notok "$host: curl $url: want ~$want, got: $(head -c 200 <<<"$body")"
            return 1
        fi
        sleep 0.02
    done
}

tb_setup() {
    W=$(mktemp -d /tmp/sdwan-testbed.XXXXXX)
    mkdir -p "$W/log"
    tb_log "work dir $W, $NWORKERS workers"
    tb_cleanup_stale
    tb_net && tb_certs && tb_brokers && tb_apiserver && tb_topology
}

# Namespaces left behind by a run that was killed with SIGKILL.
tb_cleanup_stale() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-"); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$ns"
    done
}
