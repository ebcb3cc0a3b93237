#!/usr/bin/env bash
# The real OpenClaw node host (npm openclaw@2026.9.6 on node 26) against
# `rollcall serve` with a short TTL and a short keepalive:
#   - it stays listed, `node-connected`, with a `ts` never older than the
#     keepalive interval (plus the read's own latency), for three TTLs;
#   - its `node.event` calls succeed: no "stats publish failed" in its log,
#     and its host stats are served by /v1/presence/hosts;
#   - once stopped with SIGSTOP (its TCP stays open, nothing answers), its
#     row is marked `node-disconnected` within two keepalive intervals.
#
# Usage: ROLLCALL_BIN=target/debug/rollcall bash tests/openclaw/run.sh
# Environment:
#   ROLLCALL_BIN   the binary to test (default target/debug/rollcall)
#   OPENCLAW_DIR   where openclaw and node 26 are installed (shared with
#                  tests/openclaw_tls; installed with npm when missing)
#   PORT=28812     loopback port
set -euo pipefail

cd "$(dirname "$0")/../.."
ROLLCALL_BIN=${ROLLCALL_BIN:-target/debug/rollcall}
PORT=${PORT:-28812}
TTL_S=4
KEEPALIVE_S=2
TOKEN=keepalive-e2e

die() { echo "openclaw-keepalive: $*" >&2; exit 1; }
[[ -x "$ROLLCALL_BIN" ]] || die "no $ROLLCALL_BIN (cargo build first)"
source tests/openclaw/install.sh

WORK=$(mktemp -d)
PIDS=()
NODE_PID=0
cleanup() {
    kill -CONT -- "-$NODE_PID" 2>/dev/null || true
    kill -- "-$NODE_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$ROLLCALL_BIN" serve --bind "127.0.0.1:$PORT" --token "$TOKEN" \
    --presence-ttl "${TTL_S}s" --keepalive "${KEEPALIVE_S}s" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

mkdir -p "$WORK/home"
# Its own process group: the node host runs in a child process, and SIGSTOP
# must reach the whole tree.
HOME="$WORK/home" OPENCLAW_GATEWAY_TOKEN="$TOKEN" setsid "$NODE" "$OPENCLAW" node run \
    --host 127.0.0.1 --port "$PORT" --no-tls --display-name n1 >"$WORK/node.log" 2>&1 &
NODE_PID=$!
PIDS+=("$NODE_PID")

get() { curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$1"; }
# row: the node row as "REASON AGE_MS VERSION", or nothing.
row() {
    get /v1/presence | python3 -c '
import json, sys, time
now = time.time() * 1000
for e in json.load(sys.stdin):
    if e.get("mode") == "node":
        print(e.get("reason"), int(now - e["ts"]), e.get("version"))
        break'
}

for _ in $(seq 1200); do
    [[ -n $(row) ]] && break
    sleep 0.1
done
[[ -n $(row) ]] || { tail -20 "$WORK/node.log" >&2; die "the node host never connected"; }
echo "openclaw-keepalive: connected: $(row)"

# Three TTLs, once a second: listed, node-connected, ts fresh.
limit_ms=$(( KEEPALIVE_S * 1000 + 500 ))
for _ in $(seq $(( 3 * TTL_S ))); do
    read -r reason age version <<<"$(row)"
    [[ $reason == node-connected ]] || die "not node-connected: '$reason'"
    (( age <= limit_ms )) || die "ts is ${age} ms old (keepalive ${KEEPALIVE_S}s)"
    sleep 1
done
echo "openclaw-keepalive: listed node-connected for $(( 3 * TTL_S )) s with a TTL of ${TTL_S} s (version $version)"

for _ in $(seq 600); do
    get /v1/presence/hosts | grep -q '"cpuCount"' && break
    sleep 0.1
done
get /v1/presence/hosts | grep -q '"cpuCount"' || die "no host stats served"
if grep -q "stats publish failed" "$WORK/node.log"; then
    die "the node host logged: $(grep 'stats publish failed' "$WORK/node.log")"
fi
echo "openclaw-keepalive: node.event accepted, host stats: $(get /v1/presence/hosts | head -c 200)"

kill -STOP -- "-$NODE_PID"
stopped=$(date +%s%3N)
for _ in $(seq 300); do
    read -r reason _ _ <<<"$(row)"
    [[ $reason == node-disconnected ]] && break
    sleep 0.1
done
[[ $reason == node-disconnected ]] || die "still '$reason' after SIGSTOP"
took=$(( $(date +%s%3N) - stopped ))
(( took <= 2 * KEEPALIVE_S * 1000 + 1000 )) || die "marked disconnected after ${took} ms"
echo "openclaw-keepalive: SIGSTOPped node host marked node-disconnected after ${took} ms (keepalive ${KEEPALIVE_S}s)"
echo "openclaw-keepalive: ok"
