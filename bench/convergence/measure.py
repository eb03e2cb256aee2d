#!/usr/bin/env python3
"""Convergence measurement inside the namespace testbed (run by bench/convergence/run.sh).

For each run: a service is created (EndpointSlice, then Service) in the fake API server (from
inside the central-office namespace), and the time is taken from just before the first of those
requests to
  - the first DNS answer with the expected address on each measured host (a UDP query to the
    host's resolver, its gateway agent, every 1 ms), and
  - then the first successful HTTP GET from that host to the answered address and the
    NodePort (a fresh TCP connection each try), whose body names the service;
then the service is deleted (Service, then EndpointSlice) and the time to the first NXDOMAIN is
taken the same way. Each create and delete starts after QUIET_MS (env, default 100) without a
change, longer than the master's --debounce: the changes are isolated, as issue 11 (item 9)
measures them (an isolated change is planned and published at once; changes closer together
than --debounce coalesce, and QUIET_MS=0 measures that). Sockets are opened inside the namespaces with setns(2) (Linux, root).
Each measured host is followed by its own thread, so that one host's HTTP checks never
delay another host's DNS polling (a GET to the NodePort takes 2-12 ms on a loaded machine).

With PROXY=1 (nginx and the worker agents run), two more times: to the first HTTP GET through
nginx on the node (`http://<service>.bench.<suffix>/bench/<service>/`, port 80) that reaches
the backend after a create, and to the first that nginx answers with its "No service at this
path" 404 after a delete.

CSV rows: workers,run,op,host,metric(dns|http-nodeport|http-nginx),ms

usage: measure.py API_URL NS_PREFIX RUNS WORKERS PROXY(0|1) OUT.csv HOST:GATEWAY_IP...
"""
import ctypes
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
SUFFIX = "k8s.internal"


def enter(ns):
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {ns}: {os.strerror(e)}")
    finally:
        os.close(fd)


def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def skip_name(msg, i):
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1


def parse(msg):
    """(rcode, [IPv4 addresses in the answer])"""
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    i = 12
    for _ in range(qd):
        i = skip_name(msg, i) + 4
    addrs = []
    for _ in range(an):
        i = skip_name(msg, i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[i:i + 4]))
        i += rdlen
    return flags & 0xF, addrs


class Resolver:
    def __init__(self, ns, server):
        enter(ns)
        self.ns = ns
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((server, 53))
        self.sock.settimeout(0.2)
        self.qid = 1

    def ask(self, name):
        self.qid = (self.qid + 1) & 0xFFFF
        self.sock.send(query(name, self.qid))
        while True:
            try:
                msg = self.sock.recv(1500)
            except socket.timeout:
                return None
            if struct.unpack(">H", msg[:2])[0] == self.qid:
                return parse(msg)


def http_ok(ns, addr, port, path, host, want):
    enter(ns)
    try:
        c = http.client.HTTPConnection(addr, port, timeout=0.5)
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        c.close()
        return want in body
    except OSError:
        return False


class Api:
    def __init__(self, url, ns):
        enter(ns)
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=5)
        self.conn.connect()

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {r.status}")


def service(name, port):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                "targetPort": 8080, "nodePort": port}]}}


def slice_(name, node):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abcde", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.0.5"], "nodeName": node,
                           "conditions": {"ready": True, "serving": True, "terminating": False}}]}


def follow(r, name, pred, t0, checks, end, out, errors):
    """One host: polls its resolver until pred(answer) holds, then each HTTP check in turn;
    appends (host, metric, ms) to out, or the state it was left in to errors."""
    k = 0  # 0 = DNS pending, k = checks[k-1] pending
    try:
        while k <= len(checks):
            if k == 0:
                a = r.ask(name)
                ok = a is not None and pred(a)
                metric = "dns"
            else:
                metric, args = checks[k - 1]
                ok = http_ok(r.ns, *args)
            if ok:
                out.append((r.ns, metric, (time.perf_counter_ns() - t0) / 1e6))
                k += 1
                continue
            if time.perf_counter_ns() > end:
                errors.append(f"{r.ns}: step {k} pending")
                return
            time.sleep(0.001)
    except Exception as e:  # noqa: BLE001 (reported by wait_all)
        errors.append(f"{r.ns}: {e!r}")


def wait_all(resolvers, name, pred, t0, checks, deadline_s=10.0):
    """Follows every host at once, each in its own thread (so one host's HTTP checks never
    delay another host's DNS polling): its resolver until pred(answer) holds, then each HTTP
    check in turn. checks: [(metric, (addr, port, path, host, want))].
    Returns [(host, metric, ms)] in the order reached."""
    out, errors = [], []
    end = time.perf_counter_ns() + int(deadline_s * 1e9)
    threads = [threading.Thread(target=follow, args=(r, name, pred, t0, checks, end, out, errors))
               for r in resolvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{name}: not converged: {errors} (checks {checks})")
    return sorted(out, key=lambda x: x[2])


def main():
    api_url, prefix, runs, workers, proxy, out = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                                  int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6])
    hosts = [h.split(":") for h in sys.argv[7:]]
    api = Api(api_url, f"{prefix}-co")
    resolvers = [Resolver(f"{prefix}-{h}", gw) for h, gw in hosts]
    node = f"w{workers}"
    node_ip = f"10.77.0.1{workers}"
    port = 30090
    rows = []
    quiet = float(os.environ.get("QUIET_MS", "100")) / 1000
    for run in range(runs):
        name = f"svc{run}"
        fqdn = f"{name}.bench.{SUFFIX}"
        nodeport = [("http-nodeport", (node_ip, port, "/", fqdn, "bench on"))]
        nginx_up = [("http-nginx", (node_ip, 80, f"/bench/{name}/", fqdn, "bench on"))]
        nginx_gone = [("http-nginx", (node_ip, 80, f"/bench/{name}/", fqdn, "No service at this path"))]
        time.sleep(quiet)
        t0 = time.perf_counter_ns()
        api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices", slice_(name, node))
        api.call("POST", "/api/v1/namespaces/bench/services", service(name, port))
        got = wait_all(resolvers, fqdn, lambda a: a[0] == 0 and a[1] == [node_ip], t0,
                       nodeport + (nginx_up if proxy else []))
        rows += [(workers, run, "create", ns.removeprefix(prefix + "-"), m, ms) for ns, m, ms in got]
        time.sleep(quiet)
        t0 = time.perf_counter_ns()
        api.call("DELETE", f"/api/v1/namespaces/bench/services/{name}")
        api.call("DELETE", f"/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/{name}-abcde")
        got2 = wait_all(resolvers, fqdn, lambda a: a[0] == 3, t0, nginx_gone if proxy else [])
        rows += [(workers, run, "delete", ns.removeprefix(prefix + "-"), m, ms) for ns, m, ms in got2]
        print(f"run {run}: " + " ".join(f"{m} {ns.removeprefix(prefix + '-')} {ms:.1f}" for ns, m, ms in got + got2),
              file=sys.stderr)
    with open(out, "a") as f:
        for r in rows:
            f.write(",".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + "\n")


if __name__ == "__main__":
    main()
