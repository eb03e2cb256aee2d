#!/usr/bin/env bash
# The paper's testbed (its Figure 6) in network namespaces, end to end: fake Kubernetes API
# server -> sdwan-discovery -> mosquitto (TLS; one region through a bridged regional broker) ->
# sdwan-agent on three branch gateways -> dig and curl on the hosts behind them.
# docs/testbed.md describes the topology and every check.
#
#   sudo tests/testbed/run.sh      (root: network namespaces; binaries from cargo build -p
#                                   sdwan-agent -p sdwan-discovery -p sdwan-testbed)
#
# Env: CARGO_TARGET_DIR / SDWAN_BIN_DIR (binaries), TESTBED_PREFIX (namespace prefix, default
# sdtb), KEEP_WORKDIR=1 (keep logs). Exit 0 only when every check held; the last line is the
# summary.
set -u
. "$(dirname "$0")/lib.sh"
NWORKERS=3

if ! tb_need; then
    echo "testbed: 0 passed, 1 failed (prerequisites)"
    exit 1
fi
trap 'tb_cleanup' EXIT
trap 'exit 130' INT TERM

summary() {
    if [ "$FAILED" -gt 0 ] && [ -n "$W" ]; then
        local f
        for f in "$W"/log/*.log; do
            echo "---- $(basename "$f") (last 15 lines)"
            tail -n 15 "$f"
        done
    fi
    echo "testbed: $PASSED passed, $FAILED failed, $SKIPPED skipped"
    [ "$FAILED" = 0 ]
    exit
}

fatal() { notok "$*"; summary; }

tb_setup || fatal "setting up namespaces, certificates, brokers, API server"
ok "namespaces, brokers (central + bridged regional) and fake API server up"

# The cluster: three workers and a control-plane node; two services.
for i in 1 2 3; do set_node "w$i" True || fatal "creating node w$i"; done
api POST /api/v1/nodes '{"apiVersion":"v1","kind":"Node","metadata":{"name":"cp","labels":{"node-role.kubernetes.io/control-plane":""}},"status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"10.77.0.1"}]}}' ||
    fatal "creating the control-plane node"
add_service default hello 30080 w1 w2 || fatal "creating service hello"
add_service shop web 30081 w2 w3 || fatal "creating service web"

start_backends hello=30080 web=30081 fresh=30082 late=30083 || fatal "backends"
PROXY=0
if worker_mode_available; then PROXY=1; start_proxies; fi
# The gateways probe the workers' nginx port (from the zone); without nginx, a NodePort that
# answers on every worker.
[ $PROXY = 1 ] || PROBE_PORT=30080
start_master
for g in g1 g2 g3; do start_gateway "$g"; done

W1=10.77.0.11 W2=10.77.0.12 W3=10.77.0.13 W2V6=$(worker_ip6 w2)
# Nearness: g1 near w1,w2,w3; g2 near w2,w3,w1; g3 near w3,w2,w1 (and IPv4 only).
echo "# names from each host (g1 via the central broker, g2 and g3 via the regional bridge)"
expect_dns h1 "local.$SUFFIX" $W1 20 || fatal "g1 never served the cluster; later checks not run"
expect_dns h2 "local.$SUFFIX" $W2 20
expect_dns h3 "local.$SUFFIX" $W3 20
expect_dns h1 "hello.default.$SUFFIX" $W1
expect_dns h2 "hello.default.$SUFFIX" $W2
expect_dns h3 "hello.default.$SUFFIX" $W2
expect_dns h1 "web.shop.$SUFFIX" $W2
expect_dns h3 "web.shop.$SUFFIX" $W3
expect_dns h1 "w3.$SUFFIX" $W3
expect_dns h1 "cp.$SUFFIX" NXDOMAIN 2
# Nothing later can pass when the first answers are wrong: stop here instead of waiting out
# every deadline.
[ "$FAILED" = 0 ] || fatal "the first answers are wrong; later checks not run"

echo "# HTTP from the hosts by name to the NodePort of the nearest node"
expect_http h1 "http://hello.default.$SUFFIX:30080/" "hello on w1"
expect_http h3 "http://hello.default.$SUFFIX:30080/" "hello on w2"
expect_http h3 "http://web.shop.$SUFFIX:30081/" "web on w3"

echo "# dual-stack hosts reach the near worker (issue 13; w2 is the only dual-stack worker)"
# g1 (dual): w1 is nearest and has IPv4 only, so no name gives h1 the IPv6 of farther w2,
# which h1 would prefer (RFC 6724, curl's happy eyeballs).
expect_out "h1: getent ahosts local.$SUFFIX" $W1 10 ahosts h1 "local.$SUFFIX"
expect_out "h1: getent ahosts hello.default.$SUFFIX" $W1 10 ahosts h1 "hello.default.$SUFFIX"
expect_out "h1: AAAA of hello.default.$SUFFIX" none 2 answer h1 "hello.default.$SUFFIX" AAAA
expect_out "h1: curl http://hello.default.$SUFFIX:30080/ (happy eyeballs)" "$W1 hello on w1 path /" 10 \
    reached h1 "http://hello.default.$SUFFIX:30080/"
# g2 (dual): w2 is nearest and dual-stack: both of its families, and h2 goes over IPv6.
expect_out "h2: getent ahosts hello.default.$SUFFIX" "$W2V6 $W2" 10 ahosts h2 "hello.default.$SUFFIX"
expect_out "h2: curl http://hello.default.$SUFFIX:30080/ (happy eyeballs)" "$W2V6 hello on w2 path /" 10 \
    reached h2 "http://hello.default.$SUFFIX:30080/"
# g3 (family = "ipv4"): w2 answers hello for it, with its IPv4 address only.
expect_out "h3: getent ahosts hello.default.$SUFFIX" $W2 10 ahosts h3 "hello.default.$SUFFIX"
expect_out "h3: AAAA of w2.$SUFFIX" none 2 answer h3 "w2.$SUFFIX" AAAA
expect_out "h3: curl http://hello.default.$SUFFIX:30080/" "$W2 hello on w2 path /" 10 \
    reached h3 "http://hello.default.$SUFFIX:30080/"

if [ $PROXY = 1 ]; then
    echo "# HTTP through nginx on the nearest worker (worker mode of the agent)"
    expect_http h1 "http://local.$SUFFIX/hello/" "hello on w1" 20
    expect_http h3 "http://local.$SUFFIX/web/" "web on w3" 20
    expect_http h2 "http://local.$SUFFIX/shop/web/" "web on w2"
    # Dual-stack w2's nginx listens on IPv6 too: h2 reaches it over IPv6 (issue 13); h1's
    # local, IPv4-only w1, over IPv4.
    expect_out "h2: curl http://local.$SUFFIX/hello/" "$W2V6 hello on w2 path /" 10 \
        reached h2 "http://local.$SUFFIX/hello/"
    expect_out "h1: curl http://local.$SUFFIX/hello/" "$W1 hello on w1 path /" 10 \
        reached h1 "http://local.$SUFFIX/hello/"
    expect_http h1 "http://local.$SUFFIX/help/" "hello"
    expect_http h1 "http://local.$SUFFIX/help/" "web"
else
    skip "curl http://local.$SUFFIX/<service>/ and /help/ through nginx: sdwan-agent has no worker mode yet (issue 5)"
fi

echo "# a new service appears, a deleted one disappears"
add_service default fresh 30082 w3 || notok "creating service fresh"
expect_dns h1 "fresh.default.$SUFFIX" $W3
expect_dns h2 "fresh.default.$SUFFIX" $W3
expect_http h1 "http://fresh.default.$SUFFIX:30082/" "fresh on w3"
[ $PROXY = 1 ] && expect_http h3 "http://local.$SUFFIX/fresh/" "fresh on w3"
del_service default fresh || notok "deleting service fresh"
expect_dns h1 "fresh.default.$SUFFIX" NXDOMAIN
expect_dns h3 "fresh.default.$SUFFIX" NXDOMAIN
[ $PROXY = 1 ] && expect_http h3 "http://local.$SUFFIX/fresh/" "No service at this path"

echo "# a worker goes NotReady and comes back"
set_node w1 False || notok "marking w1 NotReady"
expect_dns h1 "local.$SUFFIX" $W2
expect_dns h1 "hello.default.$SUFFIX" $W2
expect_dns h1 "w1.$SUFFIX" NXDOMAIN
set_node w1 True || notok "marking w1 Ready"
expect_dns h1 "local.$SUFFIX" $W1

echo "# the central broker restarts"
stop mosquitto-central
start_broker central || notok "central broker did not come back"
add_service default after-broker 30083 w2 || notok "creating service after-broker"
expect_dns h1 "after-broker.default.$SUFFIX" $W2 20
expect_dns h3 "after-broker.default.$SUFFIX" $W2 20
del_service default after-broker || notok "deleting after-broker"

echo "# the master restarts"
stop master
expect_dns h2 "local.$SUFFIX" $W2 2
start_master
add_service default after-master 30083 w3 || notok "creating service after-master"
expect_dns h1 "after-master.default.$SUFFIX" $W3 20
expect_dns h2 "after-master.default.$SUFFIX" $W3 20

echo "# a gateway agent restarts (serves its persisted zone at once, then follows changes)"
stop agent-g2
start_gateway g2
expect_dns h2 "after-master.default.$SUFFIX" $W3 5
del_service default after-master || notok "deleting after-master"
expect_dns h2 "after-master.default.$SUFFIX" NXDOMAIN 20
expect_dns h1 "after-master.default.$SUFFIX" NXDOMAIN

# Branch autonomy (issue 14): g1 loses its path to w1 only; w1 stays Ready in the API and
# reachable from the central office and the other branches.
branch_autonomy() {
    local t
    echo "# branch autonomy: the path g1 -> w1 is cut (w1 stays Ready, reachable from elsewhere)"
    expect_dns h1 "local.$SUFFIX" $W1 || return
    cut_path g1 w1 || { notok "cutting g1 -> w1 (iptables in $P-g1)"; return; }
    if t=$(answer_within h1 "local.$SUFFIX" $W2 3); then
        ok "h1: local.$SUFFIX -> $W2 ${t} ms after the cut (limit 3 s)"
    else
        notok "h1: local.$SUFFIX: want $W2 within 3 s of the cut: $t"
    fi
    expect_dns h1 "hello.default.$SUFFIX" $W2 1
    expect_dns h1 "web.shop.$SUFFIX" $W2 1
    expect_out "co: w1:30080 from the central office" open 2 tcp_state co $W1 30080
    expect_out "g2: w1:30080 from branch g2" open 2 tcp_state g2 $W1 30080
    expect_out "g1: w1:30080 from branch g1 (cut)" closed 2 tcp_state g1 $W1 30080
    expect_out "master: g1 sees w1 down" \
        "sdwan_gateway_worker_down{gateway=\"g1\",worker=\"w1\"} 1" 10 \
        metric 'sdwan_gateway_worker_down{gateway="g1",worker="w1"}'
    expect_out "master: gateways that see w1 down" "sdwan_worker_down_gateways{worker=\"w1\"} 1" 5 \
        metric 'sdwan_worker_down_gateways{worker="w1"}'
    expect_out "master log: the change, once" 1 5 \
        log_count master 'gateway g1 sees worker "w1" down (1 of 3 workers)'
    restore_path g1 w1
    if t=$(answer_within h1 "local.$SUFFIX" $W1 10); then
        ok "h1: local.$SUFFIX -> $W1 ${t} ms after the path is back (limit 10 s)"
    else
        notok "h1: local.$SUFFIX: want $W1 within 10 s of the restore: $t"
    fi
    expect_dns h1 "hello.default.$SUFFIX" $W1 1
    expect_out "master: g1 sees w1 up again" absent 10 \
        metric 'sdwan_gateway_worker_down{gateway="g1",worker="w1"}'
    expect_out "master log: up again" 1 5 \
        log_count master 'gateway g1 sees worker "w1" up again (0 of 3 workers down)'

    local secs=${LOSS_SECS:-60} deadline got changes=""
    echo "# 10 % loss each way on g1 <-> w1: no answer changes over $secs s (polled every 0.5 s)"
    cut_path g1 w1 10 || { notok "10 % loss on g1 <-> w1"; return; }
    deadline=$(( $(now_ms) + secs * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        got=$(answer h1 "local.$SUFFIX")
        [ "$got" = $W1 ] || changes+=" $got@$(( secs - (deadline - $(now_ms)) / 1000 ))s"
        sleep 0.5
    done
    restore_path g1 w1
    if [ -z "$changes" ]; then
        ok "h1: local.$SUFFIX stayed $W1 for $secs s under 10 % loss"
    else
        notok "h1: local.$SUFFIX flapped under 10 % loss:$(head -c 300 <<<"$changes")"
    fi

    echo "# no master, no brokers: g1 still fails over, and says its answers are stale"
    expect_dns h1 "web.shop.$SUFFIX" $W2 || return
    stop master
    stop mosquitto-region
    stop mosquitto-central
    expect_out "h1: web.shop.$SUFFIX right after the brokers stopped" "no EDE, TTL <= 30" 1 \
        stale_view h1 "web.shop.$SUFFIX"
    cut_path g1 w2 || { notok "cutting g1 -> w2"; return; }
    if t=$(answer_within h1 "web.shop.$SUFFIX" $W3 3); then
        ok "h1: web.shop.$SUFFIX -> $W3 ${t} ms after the cut, without master and brokers (limit 3 s)"
    else
        notok "h1: web.shop.$SUFFIX: want $W3 within 3 s of the cut: $t"
    fi
    expect_out "h1: web.shop.$SUFFIX after --stale-after $STALE_AFTER s without the broker" \
        "EDE 3, TTL <= 30" $((STALE_AFTER + 5)) stale_view h1 "web.shop.$SUFFIX"
    expect_dns h1 "local.$SUFFIX" $W1 1
    restore_path g1 w2
}

if ! agent_probes; then
    skip "branch autonomy (issue 14): sdwan-agent has no --probe-port flag (gateway probing not in this build)"
elif ! command -v iptables >/dev/null || ! command -v ip6tables >/dev/null; then
    skip "branch autonomy (issue 14): iptables missing (Debian: iptables), the path cannot be cut"
else
    branch_autonomy
fi

summary
