#!/usr/bin/env bash
# What a telemetry endpoint in trouble costs a service: throughput, p99, CPU per request
# (every thread of the server: the measure a shared machine disturbs least) and peak
# resident memory of a failing route (every request a 500: a Sentry event and a span) with the
# Sentry DSN or the OTLP endpoint on a closed port, on a port that accepts and never
# answers, and on one that answers after 2 s, against the same service with no exporter,
# each run beside a run of that baseline (the machine's speed drifts; a pair shares it). The service (benches/outage.rs, one tokio worker) runs on core 0,
# wrk and the endpoints (scripts/outage-endpoint.py) on core 1. Everything on 127.0.0.1.
# Usage: scripts/outage.sh [scenario ...]   (default: all; `OUTAGE_LIST=1` lists them)
# Env: DURATION (default 5s), CONNECTIONS (default 32), ROUNDS (default 5).
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

duration=${DURATION:-5s}; conns=${CONNECTIONS:-32}; rounds=${ROUNDS:-5}
results="$tmp/results"
run() { # scenario -> appends "scenario req/s p99 peak-rss-KiB" to $results
  local s=$1 port pid out
  port=$(free_port)
  # shellcheck disable=SC2046
  env -i PATH="$PATH" OUTAGE_ADDR="127.0.0.1:$port" RUST_LOG=warn $(env_of "$s") \
    taskset -c 0 "$bin" >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/fail" && break; sleep 0.1; done
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency "http://127.0.0.1:$port/fail")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  # CPU the whole server used (every thread; clock ticks), per request served below.
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$s $(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="99%" {print $2}') $hwm" \
    "$ticks $(echo "$out" | awk '/requests in/ {print $1}')" >>"$results"
}
# Each scenario runs right beside its own run of `none` (in turn first and second), so the
# ratio of each pair sees the same moment of a machine whose speed drifts; each scenario's
# median pair is reported.
for round in $(seq "$rounds"); do
  for s in "${scenarios[@]}"; do
    [ "$s" = none ] && continue
    if [ $((round % 2)) -eq 1 ]; then run none; run "$s"; else run "$s"; run none; fi
  done
done
python3 - "$results" "$(getconf CLK_TCK)" "${scenarios[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tick = 1e6 / float(sys.argv[2])
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
# (scenario, req/s, p99 ms, peak RSS MiB, CPU us per request)
runs = [(r[0], float(r[1]), ms(r[2]), int(r[3]) / 1024, int(r[4]) * tick / int(r[5])) for r in rows]
# Pairs in the order they ran: (none, s) or (s, none).
pairs = {}
for a, b in zip(runs[0::2], runs[1::2]):
    base, other = (a, b) if a[0] == "none" else (b, a)
    pairs.setdefault(other[0], []).append((base, other))
none = [r for r in runs if r[0] == "none"]
med = statistics.median
print(f"{'scenario':<16} {'req/s':>8} {'p99 ms':>7} {'CPU us/req':>10} {'RSS MiB':>8}"
      f" {'req/s vs none':>14} {'p99 vs none':>12} {'CPU vs none':>12}   pair ratios (req/s)")
print(f"{'none':<16} {med(r[1] for r in none):>8.0f} {med(r[2] for r in none):>7.2f} "
      f"{med(r[4] for r in none):>10.2f} {max(r[3] for r in none):>8.1f} {'1.00x':>14} {'1.00x':>12} {'1.00x':>12}")
for name in sys.argv[3:]:
    if name == "none" or name not in pairs:
        continue
    ps = pairs[name]
    ratio = lambda i: med(o[i] / b[i] for b, o in ps)
    print(f"{name:<16} {med(o[1] for _, o in ps):>8.0f} {med(o[2] for _, o in ps):>7.2f} "
          f"{med(o[4] for _, o in ps):>10.2f} {max(o[3] for _, o in ps):>8.1f} "
          f"{ratio(1):>13.2f}x {ratio(2):>11.2f}x {ratio(4):>11.2f}x   "
          + " ".join(f"{o[1] / b[1]:.2f}" for b, o in ps))
PY
