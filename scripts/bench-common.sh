# Sourced by scripts/instructions.sh and scripts/load.sh: what both need around the
# `overhead` bench binary.

# Builds the `overhead` bench (workspace member benches/) with every feature and prints its path.
overhead_binary() {
  cargo bench -p tower-observability-benches --bench overhead --all-features --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="overhead" and m.get("executable"):
        print(m["executable"])' | tail -1
}

# Starts the collector that is up (scripts/otlp-sink.py, its own process) with the given
# command prefix (e.g. `taskset -c 1`), exports OVERHEAD_OTLP_UP, and stops it on exit.
start_otlp_sink() {
  sink_out=$(mktemp)
  "$@" python3 scripts/otlp-sink.py --seconds 7200 >"$sink_out" &
  sink=$!
  trap 'kill $sink 2>/dev/null || true; rm -f "$sink_out"' EXIT
  for _ in $(seq 50); do [ -s "$sink_out" ] && break; sleep 0.1; done
  OVERHEAD_OTLP_UP=$(head -1 "$sink_out")
  export OVERHEAD_OTLP_UP
}
