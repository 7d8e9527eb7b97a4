#!/usr/bin/env python3
"""A local OTLP/HTTP receiver and Sentry endpoint that print what arrives: see your service's
traces and error reports without a collector, Jaeger or Sentry (the README's first steps).

It listens where OTEL_EXPORTER_OTLP_ENDPOINT and SENTRY_DSN point (defaults
http://127.0.0.1:4318 and http://public@127.0.0.1:9000/1), so the same two variables serve
it and the service:

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 SENTRY_DSN=http://public@127.0.0.1:9000/1
    python3 scripts/telemetry-sink.py &

One line per span (`span`) and per Sentry event (`event`), flushed as they arrive. Standard
library only; OTLP over HTTP/protobuf (the default protocol; not gRPC). Stops by itself after
--seconds (default 3600)."""
import argparse
import http.server
import json
import os
import struct
import sys
import threading
import urllib.parse

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def fields(buf):
    """(field number, value) of one protobuf message: ints for varints and fixed, bytes else."""
    i, out = 0, []
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack_from("<Q", buf, i)[0], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = struct.unpack_from("<I", buf, i)[0], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def attributes(kvs):
    """KeyValue messages -> {key: value} (strings, ints and bools)."""
    out = {}
    for kv in kvs:
        f = dict(fields(kv))
        value = dict(fields(f.get(2, b"")))
        if 1 in value:
            out[f[1].decode()] = value[1].decode(errors="replace")
        elif 3 in value:
            out[f[1].decode()] = value[3]
        elif 2 in value:
            out[f[1].decode()] = bool(value[2])
    return out


def spans(request):
    """Yields (service.name, span fields, span attributes) of an ExportTraceServiceRequest."""
    for number, resource_spans in fields(request):
        if number != 1:
            continue
        parts = fields(resource_spans)
        resource = [fields(v) for n, v in parts if n == 1]
        service = attributes([v for n, v in (resource[0] if resource else []) if n == 1])
        for n, scope_spans in parts:
            if n != 2:
                continue
            for m, span in fields(scope_spans):
                if m == 2:
                    span = fields(span)
                    yield service.get("service.name", "?"), dict(span), attributes(
                        [v for k, v in span if k == 9])


def say(line):
    print(line, flush=True)


class Otlp(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            for service, span, attrs in spans(body):
                status = dict(fields(span.get(15, b""))).get(3, 0)
                say(f"span   {service}: {span.get(5, b'').decode()!r} "
                    f"kind={KINDS.get(span.get(6), '?')} "
                    f"status={ {0: 'unset', 1: 'ok', 2: 'error'}.get(status, status)} "
                    f"http.response.status_code={attrs.get('http.response.status_code', '-')} "
                    f"trace_id={span.get(1, b'').hex()}")
        except (ValueError, IndexError, struct.error) as e:
            say(f"span   ? {len(body)} bytes that are not OTLP protobuf ({e})")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def items(envelope):
    """(item header, payload) of a Sentry envelope."""
    lines = envelope.split(b"\n", 1)
    rest = lines[1] if len(lines) > 1 else b""
    while rest.strip():
        header, _, rest = rest.partition(b"\n")
        header = json.loads(header)
        if "length" in header:
            payload, rest = rest[:header["length"]], rest[header["length"] + 1:]
        else:
            payload, _, rest = rest.partition(b"\n")
        yield header, payload


class Sentry(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            for header, payload in items(body):
                if header.get("type") != "event":
                    continue
                event = json.loads(payload)
                exception = (event.get("exception") or {}).get("values") or [{}]
                what = event.get("message") or event.get("logentry", {}).get("message") or \
                    f"{exception[-1].get('type')}: {exception[-1].get('value')}"
                trace = (event.get("contexts") or {}).get("trace") or {}
                say(f"event  {event.get('level', 'error')}: {what!r} "
                    f"transaction={event.get('transaction')!r} "
                    f"trace_id={trace.get('trace_id', '-')}")
        except (ValueError, KeyError) as e:
            say(f"event  ? {len(body)} bytes that are not a Sentry envelope ({e})")
        reply = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def listen(var, default, handler):
    url = urllib.parse.urlsplit(os.environ.get(var, "").strip() or default)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        sys.exit(f"telemetry-sink: cannot listen on {host}:{port} ({e.strerror}): "
                 f"point {var} at a free port")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3600)
    args = parser.parse_args()
    otlp = listen("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", Otlp)
    sentry = listen("SENTRY_DSN", "http://public@127.0.0.1:9000/1", Sentry)
    o, s = otlp.server_address, sentry.server_address
    say(f"telemetry-sink: OTLP/HTTP on http://{o[0]}:{o[1]}/v1/traces, "
        f"Sentry on http://{s[0]}:{s[1]} (stops after {args.seconds:g} s)")
    for server in (otlp, sentry):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait(args.seconds)


if __name__ == "__main__":
    main()
