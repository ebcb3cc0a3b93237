#!/usr/bin/env bash
# The fleet fault suite (tests/fleet_faults.rs), run RUNS times (default 5),
# then the median time each fault took to converge after it ended.
#
#   bash benches/fleet_faults.sh [RUNS]
#
# Needs redis-server and faketime (Debian packages). Leases are 1 s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-5}"
times="$(mktemp)"
trap 'rm -f "$times"' EXIT
for run in $(seq "$runs"); do
  echo "run $run/$runs" >&2
  ROLLCALL_FAULT_TIMES="$times" cargo test -q --test fleet_faults -- --ignored --test-threads=1 >/dev/null
done
python3 - "$times" <<'PY'
import statistics, sys
by_fault = {}
for line in open(sys.argv[1]):
    fault, ms = line.rstrip("\n").split("\t")
    if fault != "start":
        by_fault.setdefault(fault, []).append(int(ms))
print(f"| fault | runs | median ms | leases (1 s) | max ms |")
print(f"|---|---|---|---|---|")
for fault, ms in by_fault.items():
    median = statistics.median(ms)
    print(f"| {fault} | {len(ms)} | {median:.0f} | {median / 1000:.1f} | {max(ms)} |")
PY
