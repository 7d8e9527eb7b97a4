#!/usr/bin/env bash
# Instructions per request of each bench scenario, and added over `bare`, counted by
# callgrind (repeatable on a noisy machine). Each scenario runs at two request counts;
# the difference divided by the extra requests cancels start-up cost.
# Usage: scripts/instructions.sh [scenario ...]   (default: every scenario in the bench)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install valgrind" >&2; exit 1; }
# All features, so the scenarios of optional features (metrics+sentry, metrics+tracing with
# an exporter that drops) are built too.
bin=$(cargo bench --bench overhead --all-features --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="overhead" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "bench binary not built" >&2; exit 1; }
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=($(OVERHEAD_LIST=1 "$bin"))
fi
low=${LOW:-2000}; high=${HIGH:-12000}
count() { # scenario requests -> total instructions
  local out; out=$(mktemp)
  OVERHEAD_SCENARIO=$1 OVERHEAD_REQUESTS=$2 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" >/dev/null 2>"$out.err" \
    || { echo "scenario $1 failed:" >&2; tail -20 "$out.err" >&2; exit 1; }
  rm -f "$out.err"
  grep -E '^summary:' "$out" | awk '{print $2}'; rm -f "$out"
}
declare -A per
printf '%-16s %14s %14s\n' scenario "instr/request" "added vs bare"
for s in "${scenarios[@]}"; do
  a=$(count "$s" "$low") || exit 1; b=$(count "$s" "$high") || exit 1
  per[$s]=$(( (b - a) / (high - low) ))
  base=${per[bare]:-${per[$s]}}
  printf '%-16s %14d %14d\n' "$s" "${per[$s]}" $(( per[$s] - base ))
done
