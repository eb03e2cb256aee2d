# Sourced by bench/dns/run.sh and bench/dns/guest-profile.sh: the benchmark's zone, made once
# the same way for both.
#
# make_zone SIZE DIR: a cluster of about SIZE records (gen_zone.py cluster), planned for its one
# gateway by `sdwan-discovery plan` ($DISCOVERY, found or built by find_discovery), into DIR:
#   zone.v2.jsonl  the payload v2 snapshot (what the agent serves, as gateways do)
#   payload.json   the same plan as a zone payload v1
#   zone.db, dnsmasq.conf, queries.txt, expect.txt   from payload.json (gen_zone.py servers)
# Prints the number of records the plan holds.

# find_discovery REPO: sets DISCOVERY to SDWAN_DISCOVERY_BIN, else target/debug/sdwan-discovery,
# built with cargo when missing.
find_discovery() {
    DISCOVERY=${SDWAN_DISCOVERY_BIN:-${CARGO_TARGET_DIR:-$1/target}/debug/sdwan-discovery}
    if [[ ! -x $DISCOVERY ]]; then
        echo "building sdwan-discovery (for plan): cargo build -p sdwan-discovery" >&2
        (cd "$1" && cargo build -q -p sdwan-discovery) || return 1
    fi
    [[ -x $DISCOVERY ]]
}

make_zone() { # SIZE DIR
    local here
    here=$(dirname "${BASH_SOURCE[0]}")
    python3 "$here/gen_zone.py" cluster "$1" "$2" &&
        "$DISCOVERY" plan --cluster-file "$2/cluster.json" --topology "$2/topology.toml" \
            --out "$2/plan" --serial 2026112801 >/dev/null &&
        cp "$2/plan/gateways/gw-bench.json" "$2/payload.json" &&
        cp "$2/plan/gateways/gw-bench.v2.jsonl" "$2/zone.v2.jsonl" &&
        python3 "$here/gen_zone.py" servers "$2/payload.json" "$2" &&
        python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["records"]))' "$2/payload.json"
}
