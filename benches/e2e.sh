#!/usr/bin/env bash
# End-to-end benchmark: `rollcall serve` against the bare WebSocket echo server
# (examples/echo.rs), driven by the same client (`rollcall load`) with the same
# frames, on loopback. Prints one table: each figure for rollcall, for echo, and
# the ratio rollcall/echo.
#
# Scenarios (each server is started fresh for each run, and only one runs at a time):
#   beacons     100 clients x 4 system-event requests in flight (closed loop)
#   half        100 clients beaconing open-loop at half of rollcall's beacon maximum
#   readers     200 idle beacon clients + 32 readers x 2 system-presence in flight
#   mixed       100 clients x 4 in flight + 16 readers x 2 in flight
#   handshakes  100 clients that disconnect and reconnect as fast as they can
#   idle N      N connections (default 10k, 50k, 100k), a beacon every 10 s each;
#               server VmRSS growth per connection, read from /proc/PID/status,
#               and the server's CPU over the steady phase alone (from when it
#               holds N sockets until just before the steady phase ends)
#
# Each run also records the server's CPU time (utime + stime from
# /proc/PID/stat) over the load run, so CPU per request can be compared.
#
# Echo mode sends the same bytes, but its answer is the request itself: for
# readers, the gap includes serializing the presence list.
#
# Usage: benches/e2e.sh            (from anywhere; builds release first)
# Environment:
#   DURATION=10s        steady phase of each throughput run
#   IDLE_DURATION=20s   steady phase of each idle run
#   SCALES="10000 50000 100000"   idle connection counts
#   IDLE_RAMP_RATE=5000 connections/s while ramping the idle runs
#   SKIP_BUILD=1        use the binaries as they are
#   SCENARIOS="beacons half readers mixed handshakes idle"   which to run
#   SERVERS="echo rollcall"   which servers to run them against
#   SERVE_ARGS="--keepalive 0s"   extra `rollcall serve` flags (word-split)
#   ROLLCALL_BIN, ECHO_BIN   binaries to use (default target/release/...)
#   SERVE_BIN           the binary that runs `serve` (default ROLLCALL_BIN; an
#                       older build gives a before/after with the same load)
#   RC_PORT=28789 ECHO_PORT=28790   loopback ports
#   OUT=target/e2e      where each run's JSON summary is kept
# Every run is bounded by `timeout`; servers are killed on exit (trap).
set -euo pipefail

cd "$(dirname "$0")/.."
ROLLCALL_BIN=${ROLLCALL_BIN:-target/release/rollcall}
SERVE_BIN=${SERVE_BIN:-$ROLLCALL_BIN}
ECHO_BIN=${ECHO_BIN:-target/release/examples/echo}
RC_PORT=${RC_PORT:-28789}
ECHO_PORT=${ECHO_PORT:-28790}
DURATION=${DURATION:-10s}
IDLE_DURATION=${IDLE_DURATION:-20s}
SCALES=${SCALES:-"10000 50000 100000"}
IDLE_RAMP_RATE=${IDLE_RAMP_RATE:-5000}
OUT=${OUT:-target/e2e}
SCENARIOS=${SCENARIOS:-"beacons half readers mixed handshakes idle"}
SERVERS=${SERVERS:-"echo rollcall"}
SERVE_ARGS=${SERVE_ARGS:-}

die() { echo "e2e: $*" >&2; exit 1; }
command -v jq >/dev/null || die "needs jq (apt-get install jq)"

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --bin rollcall --example echo
fi
[[ -x "$ROLLCALL_BIN" ]] || die "no $ROLLCALL_BIN"
[[ " $SERVERS " != *" echo "* || -x "$ECHO_BIN" ]] || die "no $ECHO_BIN"
mkdir -p "$OUT"

# Each idle connection costs one descriptor in the server and one in the client.
# Raising the hard limit needs root (CAP_SYS_RESOURCE); otherwise keep what we have.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
NOFILE=$(ulimit -Hn)

SERVER_PID=""
LOAD_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        # Bounded wait: SIGKILL if it ignores SIGTERM for 5 s.
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    if [[ -n "$LOAD_PID" ]]; then
        kill "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
        LOAD_PID=""
    fi
    stop_server
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# start_server echo|rollcall: starts it in the background and waits for its port.
start_server() {
    local kind=$1 port
    if [[ $kind == echo ]]; then
        port=$ECHO_PORT
        "$ECHO_BIN" --bind "127.0.0.1:$port" >"$OUT/echo.log" 2>&1 &
    else
        port=$RC_PORT
        # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
        "$SERVE_BIN" serve --bind "127.0.0.1:$port" $SERVE_ARGS >"$OUT/rollcall.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "$kind server exited; see $OUT/$kind.log"
        sleep 0.1
    done
    die "$kind server did not listen on 127.0.0.1:$port within 10 s"
}

cpu_ticks() { # utime + stime of a process, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

secs() { # humantime-ish "10s"/"2m" -> seconds, for timeouts only
    local d=$1
    case $d in
        *ms) echo 1 ;;
        *s) echo "${d%s}" ;;
        *m) echo $((${d%m} * 60)) ;;
        *) echo 60 ;;
    esac
}

# steady_cpu PID N STEADY-SECS FILE: waits until the ramp is over (PID holds
# N sockets, or at least N/2 that did not grow for 2 s, or twice the ramp's
# planned length passed: some handshakes failed),
# then writes "CPU-seconds wall-seconds" of PID until 1 s before the steady
# phase ends (before the load run stops its clients).
steady_cpu() {
    local pid=$1 n=$2 steady=$3 file=$4 c0 t0 now last=-1 still=0
    local give_up=$((SECONDS + 2 * n / IDLE_RAMP_RATE + 5))
    while ((SECONDS < give_up)); do
        now=$(find "/proc/$pid/fd" -lname 'socket:*' 2>/dev/null | wc -l)
        ((now >= n)) && break
        if ((now == last)); then still=$((still + 1)); else still=0; fi
        ((now >= n / 2 && still >= 4)) && break
        last=$now
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    sleep $((steady - 1 - (still >= 4 || SECONDS >= give_up ? 2 : 0)))
    awk -v a="$c0" -v b="$(cpu_ticks "$pid")" -v t0="$t0" -v t1="$(date +%s.%N)" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f %.3f\n", (b - a) / hz, t1 - t0 }' >"$file"
}

# run NAME SERVER DURATION LOAD-ARGS...: one load run against a fresh server;
# the JSON summary goes to $OUT/NAME.SERVER.json.
run() {
    local name=$1 kind=$2 duration=$3
    shift 3
    local port=$RC_PORT mode=()
    if [[ $kind == echo ]]; then
        port=$ECHO_PORT
        mode=(--echo)
    fi
    start_server "$kind"
    local bound=$(($(secs "$duration") + 120))
    echo "e2e: $name on $kind ($*)" >&2
    # In the background and waited for, so a signal reaches the trap at once.
    timeout --kill-after=10 "$bound" "$ROLLCALL_BIN" load --url "ws://127.0.0.1:$port/" \
        "${mode[@]}" --json --rss-pid "$SERVER_PID" --duration "$duration" "$@" \
        >"$OUT/$name.$kind.json" &
    LOAD_PID=$!
    local cpu_before sampler=""
    cpu_before=$(cpu_ticks "$SERVER_PID")
    rm -f "$OUT/$name.$kind.steadycpu"
    if [[ $name == idle* ]]; then
        steady_cpu "$SERVER_PID" "${name#idle}" "$(secs "$duration")" "$OUT/$name.$kind.steadycpu" &
        sampler=$!
    fi
    if ! wait "$LOAD_PID"; then
        echo "e2e: $name on $kind failed" >&2
        echo '{}' >"$OUT/$name.$kind.json"
    fi
    LOAD_PID=""
    [[ -z $sampler ]] || wait "$sampler" || true
    # Server CPU seconds over the whole load run (ramp included).
    awk -v a="$cpu_before" -v b="$(cpu_ticks "$SERVER_PID")" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.3f\n", (b - a) / hz }' >"$OUT/$name.$kind.cpu"
    stop_server
}

# both NAME DURATION LOAD-ARGS...: the same run against echo, then rollcall
# (each of SERVERS); nothing unless NAME's scenario is in SCENARIOS.
both() {
    local name=$1 duration=$2 kind
    shift 2
    [[ " $SCENARIOS " == *" ${name%%[0-9]*} "* ]] || return 0
    for kind in $SERVERS; do
        run "$name" "$kind" "$duration" "$@"
    done
}

both beacons "$DURATION" --clients 100 --in-flight 4
# Latency at half of rollcall's closed-loop maximum: 100 clients, each
# beaconing open-loop every 100 / (max / 2) seconds.
MAX_RATE=$(jq -r '.methods["system-event"].per_sec // 0' "$OUT/beacons.rollcall.json" 2>/dev/null || echo 0)
if [[ $MAX_RATE != 0 ]]; then
    HALF_INTERVAL_US=$(awk -v r="$MAX_RATE" 'BEGIN { printf "%d", 100 * 1e6 / (r / 2) }')
    both half "$DURATION" --clients 100 --beacon-interval "${HALF_INTERVAL_US}us"
fi
both readers "$DURATION" --clients 200 --beacon-interval 10s --readers 32 --reader-in-flight 2
both mixed "$DURATION" --clients 100 --in-flight 4 --readers 16 --reader-in-flight 2
both handshakes "$DURATION" --clients 100 --beacon-interval 10s --churn-rate 1000000
SKIPPED=()
for n in $SCALES; do
    if ((n + 64 > NOFILE)); then
        SKIPPED+=("idle $n: RLIMIT_NOFILE hard limit is $NOFILE (raise it as root)")
        continue
    fi
    both "idle$n" "$IDLE_DURATION" --clients "$n" --beacon-interval 10s \
        --ramp-rate "$IDLE_RAMP_RATE" --handshake-timeout 30s
done

# cpu_row LABEL NAME JQ-COUNT: server CPU microseconds per counted request.
cpu_row() {
    local label=$1 name=$2 expr=$3 r e
    r=$(awk -v c="$(cat "$OUT/$name.rollcall.cpu" 2>/dev/null || echo 0)" \
        -v n="$(jq -r "($expr) // 0" "$OUT/$name.rollcall.json" 2>/dev/null || echo 0)" \
        'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n; else print "-" }')
    e=$(awk -v c="$(cat "$OUT/$name.echo.cpu" 2>/dev/null || echo 0)" \
        -v n="$(jq -r "($expr) // 0" "$OUT/$name.echo.json" 2>/dev/null || echo 0)" \
        'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n; else print "-" }')
    awk -v l="$label" -v r="$r" -v e="$e" 'BEGIN {
        ratio = (r ~ /^[0-9.]+$/ && e ~ /^[0-9.]+$/ && e + 0 > 0) ? sprintf("%.2f", r / e) : "-"
        printf "%-44s %14s %14s %9s\n", l, r, e, ratio
    }'
}

# steady_row LABEL NAME SCALE: server CPU over an idle run's steady phase,
# CPU-seconds per wall-second times SCALE.
steady_row() {
    local label=$1 name=$2 scale=$3 r e
    r=$(awk -v s="$scale" '{ if ($2 > 0) printf "%.2f", $1 / $2 * s }' "$OUT/$name.rollcall.steadycpu" 2>/dev/null || true)
    e=$(awk -v s="$scale" '{ if ($2 > 0) printf "%.2f", $1 / $2 * s }' "$OUT/$name.echo.steadycpu" 2>/dev/null || true)
    awk -v l="$label" -v r="${r:--}" -v e="${e:--}" 'BEGIN {
        ratio = (r ~ /^[0-9.]+$/ && e ~ /^[0-9.]+$/ && e + 0 > 0) ? sprintf("%.2f", r / e) : "-"
        printf "%-44s %14s %14s %9s\n", l, r, e, ratio
    }'
}

# row LABEL NAME JQ-EXPR: one table line from both summaries of run NAME.
row() {
    local label=$1 name=$2 expr=$3 rc ec
    rc=$(jq -r "($expr) // \"-\"" "$OUT/$name.rollcall.json" 2>/dev/null || echo -)
    ec=$(jq -r "($expr) // \"-\"" "$OUT/$name.echo.json" 2>/dev/null || echo -)
    awk -v l="$label" -v r="$rc" -v e="$ec" 'BEGIN {
        ratio = (r ~ /^[0-9.]+$/ && e ~ /^[0-9.]+$/ && e + 0 > 0) ? sprintf("%.2f", r / e) : "-"
        fr = (r ~ /^[0-9.]+$/) ? sprintf("%.0f", r) : r
        fe = (e ~ /^[0-9.]+$/) ? sprintf("%.0f", e) : e
        printf "%-44s %14s %14s %9s\n", l, fr, fe, ratio
    }'
}

ev='.methods["system-event"]'
pr='.methods["system-presence"]'
echo
printf "%-44s %14s %14s %9s\n" "figure" "rollcall" "echo" "ratio"
printf "%-44s %14s %14s %9s\n" "------" "--------" "----" "-----"
row "beacons: system-event/s" beacons "$ev.per_sec"
row "beacons: system-event p50 us" beacons "$ev.latency_us.p50"
row "beacons: system-event p99 us" beacons "$ev.latency_us.p99"
row "beacons: system-event p99.9 us" beacons "$ev.latency_us.p999"
row "beacons: errors" beacons "[.errors_by_code[]] | add // 0"
cpu_row "beacons: server CPU us per system-event" beacons "$ev.ok"
row "half of max: system-event/s" half "$ev.per_sec"
row "half of max: system-event p50 us" half "$ev.latency_us.p50"
row "half of max: system-event p99 us" half "$ev.latency_us.p99"
row "readers: system-presence/s" readers "$pr.per_sec"
row "readers: system-presence p50 us" readers "$pr.latency_us.p50"
row "readers: system-presence p99 us" readers "$pr.latency_us.p99"
row "mixed: system-event/s" mixed "$ev.per_sec"
row "mixed: system-event p99 us" mixed "$ev.latency_us.p99"
row "mixed: system-presence/s" mixed "$pr.per_sec"
row "mixed: system-presence p99 us" mixed "$pr.latency_us.p99"
row "handshakes: reconnects/s" handshakes ".reconnects_per_sec"
row "handshakes: handshake p50 us" handshakes ".handshake_latency_us.p50"
row "handshakes: handshake p99 us" handshakes ".handshake_latency_us.p99"
for n in $SCALES; do
    [[ -f "$OUT/idle$n.echo.json" || -f "$OUT/idle$n.rollcall.json" ]] || continue
    row "idle $n: connections held" "idle$n" ".held_at_end"
    row "idle $n: ramp handshakes/s" "idle$n" ".ramp.handshakes_per_sec"
    row "idle $n: server RSS bytes/connection" "idle$n" ".server_rss.bytes_per_connection"
    row "idle $n: server RSS MiB" "idle$n" ".server_rss.end_kib / 1024"
    steady_row "idle $n: server CPU % (steady phase)" "idle$n" 100
    steady_row "idle $n: server CPU us per connection-s" "idle$n" "$(awk -v n="$n" 'BEGIN { print 1e6 / n }')"
    row "idle $n: system-event p99 us" "idle$n" "$ev.latency_us.p99"
    row "idle $n: client RSS bytes/connection" "idle$n" ".client_rss.bytes_per_connection"
done
for s in "${SKIPPED[@]}"; do
    echo "skipped $s"
done
echo "summaries: $OUT/*.json"
