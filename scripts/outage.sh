#!/usr/bin/env bash
# What a telemetry endpoint in trouble costs a service: throughput, p99 and peak resident
# memory of a failing route (every request a 500: a Sentry event and a span) with the
# Sentry DSN or the OTLP endpoint on a closed port, on a port that accepts and never
# answers, and on one that answers after 2 s, against the same service with no exporter,
# in interleaved rounds. The service (benches/outage.rs, one tokio worker) runs on core 0,
# wrk and the endpoints (scripts/outage-endpoint.py) on core 1. Everything on 127.0.0.1.
# Usage: scripts/outage.sh [scenario ...]   (default: all; `OUTAGE_LIST=1` lists them)
# Env: DURATION (default 10s), CONNECTIONS (default 32), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }

all=(none sentry-closed sentry-hanging sentry-slow otlp-closed otlp-hanging otlp-slow sentry-up otlp-up)
if [ -n "${OUTAGE_LIST:-}" ]; then printf '%s\n' "${all[@]}"; exit 0; fi
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${all[@]}")

bin=$(cargo bench -p tower-observability-benches --bench outage --features otlp,sentry --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="outage" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "the outage server did not build" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The endpoints, each its own process on wrk's core, stopped on exit.
pids=()
tmp=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
endpoint() { # name mode [delay] -> prints the port
  taskset -c 1 python3 scripts/outage-endpoint.py "${@:2}" --seconds 7200 >"$tmp/$1" &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$tmp/$1" ] && break; sleep 0.1; done
}
endpoint hang hang
endpoint slow slow 2
endpoint ok ok
hang=$(head -1 "$tmp/hang"); slow=$(head -1 "$tmp/slow"); ok=$(head -1 "$tmp/ok")
closed=$(free_port)

# The environment of each scenario: Sentry on a failing endpoint with tracing's export off,
# or the OTLP export on one with no DSN. `none`: neither (spans made, not exported).
env_of() {
  local no_otlp="OTEL_TRACES_EXPORTER=none"
  case $1 in
    none)           echo "$no_otlp" ;;
    sentry-closed)  echo "$no_otlp SENTRY_DSN=http://key@127.0.0.1:$closed/1" ;;
    sentry-hanging) echo "$no_otlp SENTRY_DSN=http://key@127.0.0.1:$hang/1" ;;
    sentry-slow)    echo "$no_otlp SENTRY_DSN=http://key@127.0.0.1:$slow/1" ;;
    sentry-up)      echo "$no_otlp SENTRY_DSN=http://key@127.0.0.1:$ok/1" ;;
    otlp-closed)    echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$closed" ;;
    otlp-hanging)   echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$hang" ;;
    otlp-slow)      echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$slow" ;;
    otlp-up)        echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$ok" ;;
    *) echo "unknown scenario $1" >&2; exit 1 ;;
  esac
}

duration=${DURATION:-10s}; conns=${CONNECTIONS:-32}; rounds=${ROUNDS:-3}
results="$tmp/results"
for round in $(seq "$rounds"); do
  for s in "${scenarios[@]}"; do
    port=$(free_port)
    # shellcheck disable=SC2046
    env -i PATH="$PATH" OUTAGE_ADDR="127.0.0.1:$port" RUST_LOG=warn $(env_of "$s") \
      taskset -c 0 "$bin" >"$tmp/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/fail" && break; sleep 0.1; done
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency "http://127.0.0.1:$port/fail")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$s $rps $p99 $hwm" >>"$results"
  done
done
python3 - "$results" "${scenarios[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
print(f"{'scenario':<16} {'req/s':>9} {'vs none':>8} {'p99 ms':>8} {'vs none':>8} {'peak RSS MiB':>13}   rounds (req/s)")
base = None
for name in sys.argv[2:]:
    runs = [(float(r[1]), ms(r[2]), int(r[3]) / 1024) for r in rows if r[0] == name]
    rps = statistics.median(r for r, _, _ in runs)
    p99 = statistics.median(p for _, p, _ in runs)
    rss = max(m for _, _, m in runs)
    base = base or (rps, p99)
    print(f"{name:<16} {rps:>9.0f} {rps / base[0]:>7.2f}x {p99:>8.2f} {p99 / base[1]:>7.2f}x {rss:>13.1f}   "
          + " ".join(f"{r:.0f}" for r, _, _ in runs))
PY
