#!/usr/bin/env python3
"""A telemetry endpoint in trouble, in its own process, for scripts/outage.sh: `hang` accepts
connections and never answers; `slow SECONDS` answers every POST with 200 (an empty body:
an empty OTLP ExportTraceServiceResponse, and enough for Sentry) after SECONDS; `ok` answers
at once. Prints the port, then serves until killed or for at most --seconds (default 3600).
Listens on 127.0.0.1 only."""
import argparse
import http.server
import socket
import threading
import time


def handler(delay):
    class Answer(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(delay)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Answer


def hang(seconds):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    print(listener.getsockname()[1], flush=True)
    held = []
    listener.settimeout(1.0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            held.append(listener.accept()[0])
        except socket.timeout:
            pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["hang", "slow", "ok"])
    parser.add_argument("delay", nargs="?", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3600)
    args = parser.parse_args()
    if args.mode == "hang":
        return hang(args.seconds)
    delay = args.delay if args.mode == "slow" else 0.0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(delay))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Timer(args.seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
