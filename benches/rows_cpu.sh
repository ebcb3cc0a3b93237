#!/usr/bin/env bash
# Server CPU per beacon at a given number of rows (issue 19): fill ROWS rows
# through `rollcall load --fill`, then 20 clients x 4 in flight beacon their
# own rows for 5 s; the server's CPU comes from /proc/PID/stat.
#
# Usage: bash benches/rows_cpu.sh ROWS [BIN] [EXTRA SERVE FLAGS...]
#   BIN  the rollcall binary to serve and load with (default target/release/rollcall)
# Compare two builds in one session (A/B): run it with each BIN, same ROWS.
# The fill is one `--fill ROWS` connection (a delta feed resumed at the
# gateway's version, so it receives no lists); the server allows that many
# beacon rows per connection and keeps rows for an hour, so none expire
# while a large fill runs. Prints the load average too: quote it.
set -euo pipefail
ROWS=${1:?usage: rows_cpu.sh ROWS [BIN] [SERVE FLAGS...]}
BIN=${2:-target/release/rollcall}
shift $(( $# >= 2 ? 2 : 1 ))
PORT=${PORT:-28931}
WORK=$(mktemp -d)
CAP=$(( ROWS + 1000 > 400000 ? ROWS + 1000 : 400000 ))
"$BIN" serve --bind "127.0.0.1:$PORT" --max-entries "$CAP" --max-beacon-rows "$CAP" \
  --presence-ttl 1h "$@" >"$WORK/server.log" 2>&1 &
PID=$!
# The server is waited for, so the next run's server finds the port free.
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
kill -0 $PID 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
t0=$(date +%s.%N)
"$BIN" load --url "ws://127.0.0.1:$PORT/" --fill "$ROWS" --clients 1 --duration 1s --json >"$WORK/fill.json"
fill_secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
c0=$(cpu)
"$BIN" load --url "ws://127.0.0.1:$PORT/" --clients 20 --in-flight 4 --duration 5s --json >"$WORK/run.json"
c1=$(cpu)
ok=$(jq '.methods["system-event"].ok' "$WORK/run.json")
dur=$(jq '.duration_secs' "$WORK/run.json")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
python3 -c "
ok=$ok; dur=$dur; cpu=($c1-$c0)/$(getconf CLK_TCK)
print(f'rows=$ROWS beacons={ok} ({ok/dur:.0f}/s) server_cpu={cpu:.2f}s cpu_per_beacon={cpu/ok*1e6:.1f}us rss_kib=$rss fill_secs=$fill_secs')
"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
