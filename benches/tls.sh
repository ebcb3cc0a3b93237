#!/usr/bin/env bash
# What TLS costs: the same `rollcall load` runs against `rollcall serve` over
# ws:// and over wss:// (a self-signed certificate, pinned by fingerprint),
# interleaved, ROUNDS times each, in the same script run. Prints the median of
# each figure for plain and TLS, and the ratio TLS/plain.
#
# Scenarios (a fresh server for each run):
#   beacons     100 clients x 4 system-event requests in flight (closed loop)
#   handshakes  100 clients that disconnect and reconnect as fast as they can
#               (TCP + TLS + upgrade + connect; a full TLS handshake each
#               time: rollcall's client never resumes sessions)
#
# Usage: benches/tls.sh            (from anywhere; builds release first)
# Environment:
#   DURATION=8s     steady phase of each run
#   ROUNDS=3        runs of each scenario on each transport
#   SKIP_BUILD=1    use target/release/rollcall as it is
#   ROLLCALL_BIN    the binary (default target/release/rollcall)
#   PORT=28791      loopback port
#   OUT=target/tls-bench   where each run's JSON summary is kept
set -euo pipefail

cd "$(dirname "$0")/.."
ROLLCALL_BIN=${ROLLCALL_BIN:-target/release/rollcall}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-28791}
OUT=${OUT:-target/tls-bench}

die() { echo "tls-bench: $*" >&2; exit 1; }
command -v jq >/dev/null || die "needs jq (apt-get install jq)"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --bin rollcall
fi
[[ -x "$ROLLCALL_BIN" ]] || die "no $ROLLCALL_BIN"
mkdir -p "$OUT"
CERT="$OUT/cert.pem"
KEY="$OUT/key.pem"

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

# start_server plain|tls: starts it in the background and waits for its port.
start_server() {
    local tls=()
    if [[ $1 == tls ]]; then
        tls=(--tls-self-signed --tls-cert "$CERT" --tls-key "$KEY")
    fi
    "$ROLLCALL_BIN" serve --bind "127.0.0.1:$PORT" "${tls[@]}" >"$OUT/serve.$1.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited; see $OUT/serve.$1.log"
        sleep 0.1
    done
    die "server did not listen on 127.0.0.1:$PORT within 10 s"
}

# The certificate is made by the first TLS start and kept: every TLS run
# serves the same one.
start_server tls
FINGERPRINT=""
for _ in $(seq 100); do
    FINGERPRINT=$(grep -o 'fingerprint=[0-9a-f]\{64\}' "$OUT/serve.tls.log" | head -1 | cut -d= -f2 || true)
    [[ -n $FINGERPRINT ]] && break
    sleep 0.1
done
stop_server
[[ -n $FINGERPRINT ]] || die "no fingerprint in $OUT/serve.tls.log"

# run NAME ROUND plain|tls LOAD-ARGS...
run() {
    local name=$1 round=$2 kind=$3 url=(--url "ws://127.0.0.1:$PORT/")
    shift 3
    if [[ $kind == tls ]]; then
        url=(--url "wss://127.0.0.1:$PORT/" --tls-fingerprint "$FINGERPRINT")
    fi
    start_server "$kind"
    echo "tls-bench: $name round $round on $kind ($*)" >&2
    timeout --kill-after=10 180 "$ROLLCALL_BIN" load "${url[@]}" --json \
        --duration "$DURATION" "$@" >"$OUT/$name.$round.$kind.json" \
        || { echo "tls-bench: $name on $kind failed" >&2; echo '{}' >"$OUT/$name.$round.$kind.json"; }
    stop_server
}

for round in $(seq "$ROUNDS"); do
    for kind in plain tls; do
        run beacons "$round" "$kind" --clients 100 --in-flight 4
        run handshakes "$round" "$kind" --clients 100 --beacon-interval 10s --churn-rate 1000000
    done
done

# median NAME KIND JQ: the median over the rounds.
median() {
    for round in $(seq "$ROUNDS"); do
        jq -r "($3) // empty" "$OUT/$1.$round.$2.json"
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

row() {
    local p t
    p=$(median "$2" plain "$3")
    t=$(median "$2" tls "$3")
    awk -v l="$1" -v p="$p" -v t="$t" 'BEGIN {
        r = (p ~ /^[0-9.]+$/ && t ~ /^[0-9.]+$/ && p + 0 > 0) ? sprintf("%.2f", t / p) : "-"
        printf "%-36s %12s %12s %8s\n", l, p, t, r
    }'
}

printf "\nmedians of %s rounds, %s each\n" "$ROUNDS" "$DURATION"
printf "%-36s %12s %12s %8s\n" figure plain tls tls/plain
row "beacons: system-event/s" beacons '.methods["system-event"].per_sec'
row "beacons: p50 us" beacons '.methods["system-event"].latency_us.p50'
row "beacons: p99 us" beacons '.methods["system-event"].latency_us.p99'
row "handshakes: reconnects/s" handshakes '.reconnects_per_sec'
row "handshakes: handshake p50 us" handshakes '.handshake_latency_us.p50'
row "handshakes: handshake p99 us" handshakes '.handshake_latency_us.p99'
