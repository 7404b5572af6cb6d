#!/usr/bin/env python3
"""A loopback proxy that adds an API key to requests that carry none.

The MCP conformance suite sends no credentials, and Kifly's /api/mcp requires a key. This proxy sits
in front of the server, adds `Authorization: Bearer <key>` when a request has neither Authorization
nor X-Api-Key, and passes everything else through untouched, `Host` and `Origin` included, so the
server's DNS-rebinding checks see exactly what the suite sent.

    scripts/mcp_auth_proxy.py --upstream 127.0.0.1:8080 --key kfa_live_...   # prints its own URL

It listens on 127.0.0.1 only and prints `proxy listening on http://127.0.0.1:PORT` once ready.
Standard library only.
"""

import argparse
import http.client
import http.server
import sys

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def make_handler(upstream_host, upstream_port, key):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: the suite's own output is what matters
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            names = {name.lower() for name in self.headers.keys()}
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if "authorization" not in names and "x-api-key" not in names:
                conn.putheader("Authorization", f"Bearer {key}")
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_HEAD = forward

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the Kifly server")
    parser.add_argument("--key", required=True, help="the API key to add")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free one)")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(host, int(port), args.key))
    print(f"proxy listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
