#!/usr/bin/env bash
# Fan-out benchmarks (issue "Presence fan-out that holds at fleet scale"):
# `rollcall serve` against `rollcall load` watchers on loopback.
#
#   ui12k      12,000 `ui` watchers (tracked, operator.read, full lists,
#              default cap 200) connecting at 1,000/s; handshakes, convergence
#              after the last connect, server peak RSS (VmHWM)
#   delta12k   12,000 delta watchers (tracked: each adds a row),
#              --max-entries 20000, connecting at 1,000/s; convergence and
#              publication-to-arrival delay
#   delta12kz  delta12k with every watcher negotiating permessage-deflate
#              (`load --deflate`) and a 30 s settle; adds server CPU, wire
#              and inflated bytes
#   delta12kcli  the same with untracked (`cli`) watchers while 20 beacon
#              clients change presence every second
#   beacons    100 beacon clients x 4 in flight, alone and then with 2,000
#              full-list watchers connected (two load processes), same server
#              build: beacon throughput ratio and p99
#   deflate2k  2,000 untracked full-list watchers while 200 beacon clients
#              (200 rows) beacon every second, without and then with
#              permessage-deflate (`load --deflate`), same server build: wire
#              and inflated bytes per watcher and per list, and the server's
#              CPU seconds per list delivered (ratio deflate / plain)
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

# watchers NAME SERVE-ARGS -- LOAD-ARGS...: 12,000 watchers ramping at 1,000/s
# (WATCHERS) against a fresh server, with a 15 s settle (SETTLE); prints the peak server
# RSS, its CPU seconds and the watchers' summary.
watchers() {
    local name=$1 serve=()
    shift
    while [[ $1 != -- ]]; do serve+=("$1"); shift; done
    shift
    start "${serve[@]}"
    timeout 300 "$BIN" load --url "$URL" --json --watchers "${WATCHERS:-12000}" --watch-ramp-rate 1000 \
        --settle "${SETTLE:-15s}" --handshake-timeout 30s --rss-pid "$SERVER" "$@" >"$OUT/$name.json"
    echo "$name: peak server RSS $(hwm) KiB, server CPU $(cpu_secs) s"
    stop
    jq -c '{held: .watchers.held, converged: .watchers.converged,
         settle_s: .watchers.settle_secs, failed: .ramp.failed,
         handshake_p50_us: .watchers.handshake_latency_us.p50,
         handshake_p99_us: .watchers.handshake_latency_us.p99,
         delay_p50_us: .watchers.delay_us.p50, delay_p99_us: .watchers.delay_us.p99,
         bytes_per_watcher: .watchers.bytes_per_watcher, bytes_total: .watchers.bytes_total,
         inflated_bytes_per_watcher: .watchers.inflated_bytes_per_watcher,
         seq_gaps: .watchers.seq_gaps, delta_gaps: .watchers.delta_gaps}' "$OUT/$name.json"
}

ui12k() {
    watchers ui12k -- --clients 0 --watch-feed full --watch-mode ui --duration 1s
}

# Tracked delta watchers: each adds a row, so each hello grows with the ramp.
delta12k() {
    watchers delta12k --max-entries 20000 -- --clients 0 --watch-feed delta --watch-mode ui \
        --duration 1s
}

# delta12k, every watcher negotiating permessage-deflate; the target is
# judged 30 s after the last connect.
delta12kz() {
    SETTLE=${SETTLE:-30s} watchers delta12kz --max-entries 20000 -- --clients 0 \
        --watch-feed delta --watch-mode ui --duration 1s --deflate
}

# Untracked delta watchers; 20 beacon clients make the changes.
delta12kcli() {
    watchers delta12kcli --max-entries 20000 -- --clients 20 --beacon-interval 1s \
        --watch-feed delta --watch-mode cli --duration 10s
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

# Server CPU seconds so far (user + system), from /proc.
cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER/stat"
}

# deflate2k-run NAME [--deflate]: one run against a fresh server; prints a
# JSON line with the figures.
deflate2k_run() {
    local name=$1
    shift
    start --max-entries 1000
    timeout 240 "$BIN" load --url "$URL" --json --clients 200 --beacon-interval 1s \
        --watchers 2000 --watch-feed full --watch-mode cli --watch-ramp-rate 1000 \
        --duration 20s --settle 5s "$@" >"$OUT/$name.json"
    local cpu
    cpu=$(cpu_secs)
    stop
    jq -c --arg name "$name" --argjson cpu "$cpu" '.watchers as $w
        | ($w.presence_events / $w.watchers) as $lists
        | {run: $name, server_cpu_s: $cpu, watchers: $w.watchers, held: $w.held,
           converged: $w.converged, seq_gaps: $w.seq_gaps, lists_per_watcher: $lists,
           wire_bytes_per_watcher: $w.bytes_per_watcher,
           inflated_bytes_per_watcher: $w.inflated_bytes_per_watcher,
           wire_bytes_per_list: ($w.bytes_total / $w.presence_events),
           cpu_ms_per_1k_lists: ($cpu * 1000 / ($w.presence_events / 1000))}' "$OUT/$name.json"
}

deflate2k() {
    local plain zipped
    plain=$(deflate2k_run deflate2k-plain)
    zipped=$(deflate2k_run deflate2k-deflate --deflate)
    echo "$plain"
    echo "$zipped"
    jq -rn --argjson p "$plain" --argjson z "$zipped" '"deflate2k: wire bytes per list \($p.wire_bytes_per_list | floor) -> \($z.wire_bytes_per_list | floor) (÷\($p.wire_bytes_per_list / $z.wire_bytes_per_list * 100 | floor / 100)), server CPU per list delivered x\($z.cpu_ms_per_1k_lists / $p.cpu_ms_per_1k_lists * 100 | floor / 100), server CPU \($p.server_cpu_s) s -> \($z.server_cpu_s) s"'
}

for scenario in "${@:-ui12k delta12k delta12kcli beacons}"; do
    for s in $scenario; do "$s"; done
done
