#!/usr/bin/env python3
"""Writes one zone, from one set of records, in the two forms the DNS benchmark serves:

  payload.json  zone payload v1 for sdwan-agent (--zone-file)
  zone.db       RFC 1035 master file for Knot DNS and NSD (with the SOA/NS the agent makes)
  queries.txt   dnsperf input: existing names (A, AAAA, SRV), AAAA on A-only names (NODATA),
                names that do not exist (NXDOMAIN) and the apex SOA

usage: gen_zone.py RECORDS OUTDIR   (deterministic: the same RECORDS give the same files)
"""

import json
import random
import sys
from pathlib import Path

ORIGIN = "k8s.internal"
SERIAL = 2026112801
TTL = 30
NAMESPACES = ["default", "shop", "media", "iot", "ops"]


def records(count: int) -> list[dict]:
    """count records: workers (A + AAAA), services (A) and their SRV, plus local and the apex TXT."""
    out = [
        {"name": "local", "type": "A", "data": "192.168.200.2"},
        {"name": "@", "type": "TXT", "data": "sdwan-discovery"},
    ]
    workers = max(2, count // 20)
    for w in range(1, workers + 1):
        out.append({"name": f"worker{w}", "type": "A", "data": f"192.168.{200 + w // 250}.{w % 250 + 2}"})
        out.append({"name": f"worker{w}", "type": "AAAA", "data": f"fd00::{w:x}"})
    s = 0
    while len(out) < count:
        s += 1
        name = f"svc{s}.{NAMESPACES[s % len(NAMESPACES)]}"
        w = s % workers + 1
        out.append({"name": name, "type": "A", "data": f"192.168.{200 + w // 250}.{w % 250 + 2}"})
        if len(out) < count:
            out.append({"name": f"_http._tcp.{name}", "type": "SRV", "data": f"0 0 {30000 + s % 2768} worker{w}"})
    return out[:count]


def master_file(recs: list[dict]) -> str:
    lines = [
        f"$ORIGIN {ORIGIN}.",
        f"$TTL {TTL}",
        f"@ {TTL} IN SOA ns.{ORIGIN}. hostmaster.{ORIGIN}. {SERIAL} 3600 600 86400 {TTL}",
        f"@ {TTL} IN NS ns.{ORIGIN}.",
    ]
    for r in recs:
        data = r["data"]
        if r["type"] == "TXT":
            data = f'"{data}"'
        if r["type"] == "SRV":
            prio, weight, port, target = data.split()
            data = f"{prio} {weight} {port} {target}.{ORIGIN}."
        lines.append(f"{r['name']} {TTL} IN {r['type']} {data}")
    return "\n".join(lines) + "\n"


def queries(recs: list[dict], rng: random.Random) -> str:
    a = [r["name"] for r in recs if r["type"] == "A"]
    aaaa = [r["name"] for r in recs if r["type"] == "AAAA"]
    srv = [r["name"] for r in recs if r["type"] == "SRV"]
    a_only = sorted(set(a) - set(aaaa))
    out = []
    for i in range(1000):
        k = rng.random()
        if k < 0.40:
            q = (rng.choice(a), "A")
        elif k < 0.50:
            q = (rng.choice(aaaa), "AAAA")
        elif k < 0.60:
            q = (rng.choice(a_only), "AAAA")  # NODATA
        elif k < 0.75:
            q = (rng.choice(srv), "SRV")
        elif k < 0.95:
            q = (f"nope{i}.{rng.choice(NAMESPACES)}", "A")  # NXDOMAIN
        else:
            q = ("@", "SOA")
        name = ORIGIN if q[0] == "@" else f"{q[0]}.{ORIGIN}"
        out.append(f"{name} {q[1]}")
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    count = int(sys.argv[1])
    outdir = Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    recs = records(count)
    payload = {"version": 1, "serial": SERIAL, "gateway": "gw-bench", "origin": ORIGIN, "ttl": TTL, "records": recs}
    (outdir / "payload.json").write_text(json.dumps(payload, indent=1) + "\n")
    (outdir / "zone.db").write_text(master_file(recs))
    (outdir / "queries.txt").write_text(queries(recs, random.Random(count)))


if __name__ == "__main__":
    main()
