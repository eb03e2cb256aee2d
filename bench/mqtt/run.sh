#!/usr/bin/env bash
# Issue 3 benchmarks: publish-to-answer latency (p50/p99 over BENCH_UPDATES updates, default
# 1000) and zone swaps under dnsperf load (BENCH_SWAP_RATE swaps/s, default 20, for
# BENCH_SWAP_SECS seconds, default 60), both through mosquitto with TLS on loopback.
# Prints one markdown table per benchmark. Needs mosquitto and dnsperf (tests/setup.sh).
#
#   bench/mqtt/run.sh                 both
#   bench/mqtt/run.sh publish         publish to answer only
#   bench/mqtt/run.sh swaps           swaps under load only
#   PROFILE=release bench/mqtt/run.sh build the agent with the release profile (slow build)
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=${PROFILE:-dev}
case "${1:-all}" in
    publish) filter='test(bench_publish_to_answer)' ;;
    swaps) filter='test(bench_swaps_under_load)' ;;
    all) filter='test(/^bench_/)' ;;
    *) echo "usage: $0 [publish|swaps|all]" >&2; exit 2 ;;
esac
echo "# sdwan-agent MQTT benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), profile $profile, $(nproc) cores"
cargo nextest run -p sdwan-agent --test mqtt_bench --cargo-profile "$profile" \
    --run-ignored only -E "$filter" --no-capture --test-threads 1 2>&1 \
    | grep -E '^(\||publish to|zone swaps|$)|FAIL|panicked'
