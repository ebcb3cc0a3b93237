#!/usr/bin/env bash
# A 90,000-connection fleet on one box: 5 gateways on one Redis, each holding
# N idle node connections (default 18,000: the hard open-file limit here is
# 20,000 per process), one `rollcall load` per gateway. Reports each
# gateway's RSS and per-connection cost, Redis memory, and how long every
# gateway's /v1/presence takes to show all N x 5 clients plus the 5 self rows
# after the last connect.
#
# Usage: cargo build --release && bash benches/fleet90k.sh
# Environment: PER_GATEWAY=18000 GATEWAYS=5 RAMP=400 (connections/s per
#   gateway) REDIS_PORT=16400 BASE_PORT=28900 OUT=target/fleet90k
#   BIN=target/release/rollcall (the binary run as gateways and load clients)
# Every process is bounded by `timeout` and killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/rollcall}
PER=${PER_GATEWAY:-18000}
GW=${GATEWAYS:-5}
RAMP=${RAMP:-400}
REDIS_PORT=${REDIS_PORT:-16400}
BASE=${BASE_PORT:-28900}
OUT=${OUT:-target/fleet90k}
mkdir -p "$OUT"
ulimit -Sn "$(ulimit -Hn)"
TOTAL=$((PER * GW))
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
sleep 0.5
GPIDS=()
for i in $(seq 1 "$GW"); do
    # Not under `timeout`: $! must be the gateway itself (its RSS is read);
    # the EXIT trap stops it.
    "$BIN" serve --bind "127.0.0.1:$((BASE + i))" --fleet "redis://127.0.0.1:$REDIS_PORT" \
        --node-id "gw$i" --max-entries "$TOTAL" --max-connections "$((PER + 500))" \
        --handshake-timeout 60s >"$OUT/gw$i.log" 2>&1 &
    GPIDS+=($!)
    PIDS+=($!)
done
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A RSS0
for i in $(seq 1 "$GW"); do RSS0[$i]=$(rss "${GPIDS[$((i - 1))]}"); done
# Ramp PER/RAMP seconds, then hold; the load runs long enough to be
# connected while the convergence is measured.
HOLD=$((PER / RAMP + 60))
LPIDS=()
for i in $(seq 1 "$GW"); do
    timeout $((HOLD + 120)) "$BIN" load --url "ws://127.0.0.1:$((BASE + i))/" --clients "$PER" \
        --beacon-interval 60s --ramp-rate "$RAMP" --duration "${HOLD}s" --handshake-timeout 60s \
        --json >"$OUT/load$i.json" 2>"$OUT/load$i.log" &
    PIDS+=($!)
    LPIDS+=($!)
done
START=$(date +%s.%N)
# Wait for every gateway to list every client (plus the self rows).
count() { curl -s "http://127.0.0.1:$((BASE + $1))/v1/presence/stats" | jq .entries; }
CONVERGED=""
for _ in $(seq 1 $((HOLD * 2))); do
    sleep 1
    all=1
    line=""
    for i in $(seq 1 "$GW"); do
        n=$(count "$i" || echo 0)
        line="$line gw$i=$n"
        ((n >= TOTAL + GW)) || all=0
    done
    echo "t=$(awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }')s$line" | tee -a "$OUT/progress.log"
    if ((all)); then
        CONVERGED=$(date +%s.%N)
        break
    fi
done
if [[ -n "$CONVERGED" ]]; then
    echo "all $GW gateways list $((TOTAL + GW)) rows $(awk -v s="$START" -v e="$CONVERGED" 'BEGIN { printf "%.1f", e - s }') s after the ramp began (ramp: $((PER / RAMP)) s)"
else
    echo "NOT converged: not every gateway listed $((TOTAL + GW)) rows"
fi
for i in $(seq 1 "$GW"); do
    pid=${GPIDS[$((i - 1))]}
    now=$(rss "$pid")
    echo "gw$i: RSS $((now / 1024)) MiB ($(( (now - RSS0[$i]) * 1024 / PER )) B per connection over $PER connections)"
done
echo "redis: $(redis-cli -p "$REDIS_PORT" info memory | grep used_memory_human | tr -d '\r')"
# The load generators report when their run ends.
wait "${LPIDS[@]}" 2>/dev/null || true
for i in $(seq 1 "$GW"); do
    jq -c --arg gw "gw$i" '{gateway: $gw, connected: .ramp.connected, failed: .ramp.failed, failures: .connection_failures}' "$OUT/load$i.json" 2>/dev/null || true
done
