#!/usr/bin/env python3
"""A backend HTTP service of the testbed: `backend.py NODE ADDR NAME=PORT...` answers every
GET on each ADDR:PORT with `NAME on NODE` (one line), as a service's pods behind its NodePort.
ADDR `::` listens on every IPv6 and IPv4 address (dual-stack socket), as a NodePort does."""
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(node, addr, name, port):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{name} on {node} path {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

        def server_bind(self):
            if self.address_family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    Server((addr, port), Handler).serve_forever()


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: backend.py NODE ADDR NAME=PORT...")
    node, addr = sys.argv[1], sys.argv[2]
    threads = []
    for spec in sys.argv[3:]:
        name, port = spec.split("=")
        t = threading.Thread(target=serve, args=(node, addr, name, int(port)), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
