#!/usr/bin/env bash
# Fan-out benchmarks (issue "Presence fan-out that holds at fleet scale"):
# `rollcall serve` against `rollcall load` watchers on loopback.
#
#   ui12k      12,000 `ui` watchers (tracked, operator.read, full lists,
#              default cap 200) connecting at 1,000/s; handshakes, convergence
#              after the last connect, server peak RSS (VmHWM)
#   delta12k   12,000 delta watchers, --max-entries 20000, connecting at
#              1,000/s; convergence and publication-to-arrival delay
#   beacons    100 beacon clients x 4 in flight, alone and then with 2,000
#              full-list watchers connected (two load processes), same server
#              build: beacon throughput ratio and p99
#
# Usage: benches/fanout.sh [SCENARIO...]   (default: all; builds release first)
# Environment: ROLLCALL_BIN (default target/release/rollcall; runs `load`),
#   SERVE_BIN (default ROLLCALL_BIN; runs `serve`, e.g. an older build for a
#   before/after comparison), PORT=28801,
#   OUT=target/fanout, SKIP_BUILD=1, SERVE_ARGS (extra `serve` flags).
# Every run is bounded by `timeout`; the server is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${ROLLCALL_BIN:-target/release/rollcall}
SERVE_BIN=${SERVE_BIN:-$BIN}
PORT=${PORT:-28801}
OUT=${OUT:-target/fanout}
URL="ws://127.0.0.1:$PORT/"
mkdir -p "$OUT"
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --bin rollcall
command -v jq >/dev/null || { echo "fanout: needs jq" >&2; exit 1; }
ulimit -Sn "$(ulimit -Hn)"

SERVER=""
stop() {
    [[ -n "$SERVER" ]] || return 0
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
}
trap stop EXIT
start() {
    # shellcheck disable=SC2086
    "$SERVE_BIN" serve --bind "127.0.0.1:$PORT" ${SERVE_ARGS:-} "$@" >"$OUT/serve.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "fanout: server did not start" >&2
    exit 1
}
hwm() { awk '/VmHWM/ {print $2}' "/proc/$SERVER/status"; }

ui12k() {
    start
    timeout 300 "$BIN" load --url "$URL" --json --clients 0 --watchers 12000 \
        --watch-feed full --watch-mode ui --watch-ramp-rate 1000 --duration 1s \
        --settle 15s --handshake-timeout 30s --rss-pid "$SERVER" >"$OUT/ui12k.json"
    echo "ui12k: peak server RSS $(hwm) KiB"
    stop
    jq '{held: .watchers.held, converged: .watchers.converged,
         settle_s: .watchers.settle_secs, failed: .ramp.failed,
         handshake_p50_us: .watchers.handshake_latency_us.p50,
         handshake_p99_us: .watchers.handshake_latency_us.p99,
         delay_p99_us: .watchers.delay_us.p99,
         bytes_per_watcher: .watchers.bytes_per_watcher,
         seq_gaps: .watchers.seq_gaps}' "$OUT/ui12k.json"
}

delta12k() {
    start --max-entries 20000
    timeout 300 "$BIN" load --url "$URL" --json --clients 0 --watchers 12000 \
        --watch-feed delta --watch-mode ui --watch-ramp-rate 1000 --duration 1s \
        --settle 15s --handshake-timeout 30s --rss-pid "$SERVER" >"$OUT/delta12k.json"
    echo "delta12k: peak server RSS $(hwm) KiB"
    stop
    jq '{held: .watchers.held, converged: .watchers.converged,
         settle_s: .watchers.settle_secs, delay_p50_us: .watchers.delay_us.p50,
         delay_p99_us: .watchers.delay_us.p99, seq_gaps: .watchers.seq_gaps,
         delta_gaps: .watchers.delta_gaps}' "$OUT/delta12k.json"
}

beacons() {
    start
    timeout 120 "$BIN" load --url "$URL" --json --clients 100 --in-flight 4 \
        --duration 10s >"$OUT/beacons-alone.json"
    stop
    start
    timeout 180 "$BIN" load --url "$URL" --json --clients 0 --watchers 2000 \
        --watch-feed full --watch-mode ui --watch-ramp-rate 2000 --duration 25s \
        --settle 5s >"$OUT/beacons-watchers.json" &
    local watchers=$!
    sleep 5
    timeout 120 "$BIN" load --url "$URL" --json --clients 100 --in-flight 4 \
        --duration 10s >"$OUT/beacons-with.json"
    wait "$watchers" || true
    stop
    local alone with
    alone=$(jq '.methods["system-event"].per_sec' "$OUT/beacons-alone.json")
    with=$(jq '.methods["system-event"].per_sec' "$OUT/beacons-with.json")
    echo "beacons: alone $alone/s (p99 $(jq '.methods["system-event"].latency_us.p99' "$OUT/beacons-alone.json") us)," \
        "with 2,000 watchers $with/s (p99 $(jq '.methods["system-event"].latency_us.p99' "$OUT/beacons-with.json") us)," \
        "ratio $(awk -v a="$alone" -v w="$with" 'BEGIN { printf "%.2f", w / a }')"
}

for scenario in "${@:-ui12k delta12k beacons}"; do
    for s in $scenario; do "$s"; done
done
