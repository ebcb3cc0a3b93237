#!/usr/bin/env bash
# Where a served gateway's CPU goes on the beacon path: `perf record` on
# `SERVE_BIN serve` while `LOAD_BIN load --clients 100 --in-flight 4` runs,
# then the samples' shares by stage (benches/beacon_shares.py).
#
#   bash benches/beacon_perf.sh SERVE_BIN [LOAD_BIN]
#
# LOAD_BIN defaults to SERVE_BIN; give main's build to keep the load the
# same across servers. Records 5 s at 999 Hz with DWARF call graphs after
# 4 s of warm-up, on loopback port PORT (default 28991). Needs perf and
# python3; perf.data goes to OUT (default target/beacon-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
SERVE_BIN=${1:?usage: beacon_perf.sh SERVE_BIN [LOAD_BIN]}
LOAD_BIN=${2:-$SERVE_BIN}
PORT=${PORT:-28991}
OUT=${OUT:-target/beacon-perf}
mkdir -p "$OUT"
"$SERVE_BIN" serve --bind "127.0.0.1:$PORT" >"$OUT/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 1.5
"$LOAD_BIN" load --url "ws://127.0.0.1:$PORT/" --clients 100 --in-flight 4 \
    --duration 14s --json >"$OUT/load.json" &
load=$!
sleep 4
perf record -F 999 --call-graph dwarf -o "$OUT/perf.data" -p "$server" -- sleep 5 \
    2>"$OUT/record.txt"
wait "$load"
echo "system-event/s: $(jq -r '.methods["system-event"].per_sec' "$OUT/load.json")"
perf script -i "$OUT/perf.data" 2>/dev/null | python3 benches/beacon_shares.py
