#!/usr/bin/env bash
# Loopback throughput and p99 of each bench scenario: the server on core 0 (one tokio
# worker), wrk on core 1, same machine, same run. Usage: scripts/load.sh [scenario ...]
# Env: DURATION (default 10s), CONNECTIONS (default 32), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
source scripts/bench-common.sh
bin=$(overhead_binary)
# The collector that is up, for `all/otlp-up`: its own process, on wrk's core.
start_otlp_sink taskset -c 1
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=($(OVERHEAD_LIST=1 "$bin"))
fi
duration=${DURATION:-10s}; conns=${CONNECTIONS:-32}
# Rounds interleave the scenarios, so a slow patch of the machine hits them all alike;
# each scenario's median round is reported.
rounds=${ROUNDS:-3}
results=$(mktemp)
for round in $(seq "$rounds"); do
  for s in "${scenarios[@]}"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    OVERHEAD_SERVE=$s OVERHEAD_ADDR=127.0.0.1:$port taskset -c 0 "$bin" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/users/42" >/dev/null && break; sleep 0.1; done
    # The same request as the instruction counts: an allowlisted origin, so CORS does its work.
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency -H "Origin: https://app.example.com" "http://127.0.0.1:$port/users/42")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$s $rps $p99" >>"$results"
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
print(f"{'scenario':<22} {'req/s':>10} {'p99 ms':>8} {'vs bare':>8}   rounds (req/s)")
base = None
for name in sys.argv[2:]:
    runs = [(float(r[1]), ms(r[2])) for r in rows if r[0] == name]
    rps = statistics.median(r for r, _ in runs)
    p99 = statistics.median(p for _, p in runs)
    base = base or rps
    print(f"{name:<22} {rps:>10.0f} {p99:>8.2f} {100 * rps / base:>7.0f}%   "
          + " ".join(f"{r:.0f}" for r, _ in runs))
PY
rm -f "$results"
