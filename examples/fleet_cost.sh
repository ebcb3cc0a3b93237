#!/bin/bash
# Usage: cargo build --release && bash examples/fleet_cost.sh (needs redis-server on PATH)
# Fleet cost: same load against a lone gateway and a fleet gateway (plus a
# second, idle fleet member that receives everything), release build.
BIN="$(dirname "$0")/../target/release/rollcall"
redis-server --bind 127.0.0.1 --port 16399 --save '' --appendonly no >/dev/null &
RPID=$!
sleep 0.5
run() {
  local name=$1; shift
  $BIN serve --bind 127.0.0.1:18801 "$@" >/dev/null 2>&1 &
  local GPID=$!
  sleep 1
  local t0=$(awk '{print $14+$15}' /proc/$GPID/stat)
  $BIN load --url ws://127.0.0.1:18801 --clients 100 --in-flight 4 --duration 10s 2>&1 | grep -A3 "latency"
  local t1=$(awk '{print $14+$15}' /proc/$GPID/stat)
  echo "$name: gateway CPU ticks (1/100 s) during run: $((t1-t0))"
  kill $GPID; wait $GPID 2>/dev/null
}
$BIN serve --bind 127.0.0.1:18802 --fleet redis://127.0.0.1:16399 --node-id peer >/dev/null 2>&1 &
PPID2=$!
for i in 1 2; do
run alone
run fleet --fleet redis://127.0.0.1:16399 --node-id bench
done
P0=$(awk '{print $14+$15}' /proc/$PPID2/stat); echo "idle peer total CPU ticks: $P0"
kill $PPID2 $RPID; wait 2>/dev/null
