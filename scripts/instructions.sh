#!/usr/bin/env bash
# Instructions per request of each bench scenario, and added over `bare`, counted by
# callgrind (repeatable on a noisy machine). Each scenario runs at two request counts and
# the difference is divided by the extra requests, so start-up cost cancels out. What is
# counted: on the main thread, everything inside `one_request` (the request, its response
# and body); on every other thread, everything (span export, the Sentry transport, metric
# upkeep), so work a layer pushes off the request path is still paid for.
# Start-up outside `one_request` is left out on the main thread: it includes clock
# calibrations whose length varies from run to run by more than a layer costs.
# Usage: scripts/instructions.sh [scenario ...]   (default: every scenario in the bench)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install valgrind" >&2; exit 1; }
# All features, so the scenarios of optional features (metrics+sentry, all, ...) exist.
source scripts/bench-common.sh
bin=$(overhead_binary)
# The collector that is up, for the `all/otlp-up` scenario: another process, not counted.
start_otlp_sink
[ -x "$bin" ] || { echo "bench binary not built" >&2; exit 1; }
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=($(OVERHEAD_LIST=1 "$bin"))
fi
low=${LOW:-2000}; high=${HIGH:-12000}
count() { # scenario requests -> counted instructions
  local dir; dir=$(mktemp -d)
  OVERHEAD_SCENARIO=$1 OVERHEAD_REQUESTS=$2 valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/cg" "$bin" >/dev/null 2>"$dir/err" \
    || { echo "scenario $1 failed:" >&2; tail -20 "$dir/err" >&2; exit 1; }
  python3 - "$dir" <<'PY'
import glob, re, subprocess, sys
files = sorted(glob.glob(sys.argv[1] + "/cg-*"), key=lambda f: int(f.rsplit("-", 1)[1]))
def total(f):
    for line in open(f):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0
main, others = files[0], files[1:]
out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", main],
                     capture_output=True, text=True, check=True).stdout
inside = [int(m.group(1).replace(",", "")) for m in
          re.finditer(r"^\s*([\d,]+) .*overhead::one_request::\{\{closure\}\} \[", out, re.M)]
if not inside:
    sys.exit("one_request not found in the profile")
print(max(inside) + sum(total(f) for f in others))
PY
  rm -rf "$dir"
}
declare -A per
printf '%-22s %14s %14s\n' scenario "instr/request" "added vs bare"
for s in "${scenarios[@]}"; do
  a=$(count "$s" "$low") || exit 1; b=$(count "$s" "$high") || exit 1
  per[$s]=$(( (b - a) / (high - low) ))
  base=${per[bare]:-${per[$s]}}
  printf '%-22s %14d %14d\n' "$s" "${per[$s]}" $(( per[$s] - base ))
done
