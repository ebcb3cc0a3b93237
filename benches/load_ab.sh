#!/usr/bin/env bash
# The load generator's own cost, two builds side by side: its beacons/s and
# its CPU (user + system) per beacon, against one server.
#
#   bash benches/load_ab.sh OLD_BIN NEW_BIN [ROUNDS]
#
# One `NEW_BIN serve` (SERVE_BIN=path picks another) on a free port serves
# every run. Each round runs both load generators, `load --duration 5s
# --clients 20 --in-flight 4` (LOAD_ARGS replaces those), in alternating
# order (old first in odd rounds, new first in even ones), so drift on a
# shared machine falls on both. CPU is read by GNU time (/usr/bin/time).
# Prints a line per run, then the medians and the median of the per-round
# ratios new/old. ROUNDS defaults to 6.
set -euo pipefail

OLD=${1:?usage: benches/load_ab.sh OLD_BIN NEW_BIN [ROUNDS]}
NEW=${2:?usage: benches/load_ab.sh OLD_BIN NEW_BIN [ROUNDS]}
ROUNDS=${3:-6}
SERVE_BIN=${SERVE_BIN:-$NEW}
read -r -a LOAD <<<"${LOAD_ARGS:---duration 5s --clients 20 --in-flight 4}"
OUT=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$SERVE_BIN" serve --bind "127.0.0.1:$PORT" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$OUT"' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

# one NAME BIN ROUND: a load run; appends "NAME ROUND beacons/s cpu_us" to $OUT/runs.
one() {
    local name=$1 bin=$2 round=$3
    /usr/bin/time -f '%U %S' -o "$OUT/time" \
        "$bin" load --url "ws://127.0.0.1:$PORT/" --json "${LOAD[@]}" >"$OUT/run.json"
    python3 - "$name" "$round" "$OUT/run.json" "$OUT/time" >>"$OUT/runs" <<'EOF'
import json, sys
name, round_, summary, times = sys.argv[1:]
beacons = json.load(open(summary))["methods"]["system-event"]
user, system = map(float, open(times).read().split()[-2:])
print(name, round_, f"{beacons['per_sec']:.0f}", f"{(user + system) / beacons['ok'] * 1e6:.3f}")
EOF
    tail -n 1 "$OUT/runs" >&2
}

for round in $(seq "$ROUNDS"); do
    if ((round % 2)); then
        one old "$OLD" "$round"
        one new "$NEW" "$round"
    else
        one new "$NEW" "$round"
        one old "$OLD" "$round"
    fi
done

python3 - "$OUT/runs" <<'EOF'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
by = {(name, r): (float(rate), float(cpu)) for name, r, rate, cpu in runs}
rounds = sorted({r for _, r, _, _ in runs}, key=int)
for i, what in enumerate(["beacons/s", "load CPU per beacon (us)"]):
    old = statistics.median(by["old", r][i] for r in rounds)
    new = statistics.median(by["new", r][i] for r in rounds)
    ratio = statistics.median(by["new", r][i] / by["old", r][i] for r in rounds)
    print(f"{what}: old {old:.3f}, new {new:.3f}, median paired ratio new/old {ratio:.3f}")
EOF
