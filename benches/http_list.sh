#!/usr/bin/env bash
# GET /v1/presence on one gateway holding ROWS rows, release builds A/B:
# for each binary in turn (all of them, ROUNDS times, alternating), a fresh
# gateway is filled with ROWS rows (`rollcall load --fill`), then
#   quiet:   READS back-to-back plain reads, nothing changing;
#   plain:   READS back-to-back plain reads while 20 node clients beacon
#            10/s each (the version changes several times a second);
#   gzip:    the same with `Accept-Encoding: gzip`;
#   slow:    8 readers at once, each `curl --limit-rate 1M` for 10 s, and
#            the gateway's RSS sampled every 0.1 s: peak over the baseline;
#   sse:     the gateway's CPU over 10 s of the beacons alone, then over
#            20 s with one gzip `/v1/presence/stream` reader (`curl -N`),
#            and the compressed bytes that reader got.
# Each read is `curl -o /dev/null -w '%{time_total} %{time_starttransfer}'`;
# per phase: median and p99 of the total and of the time to first byte,
# the bytes of one answer, and the versions published per second.
# Usage: benches/http_list.sh ROWS READS ROUNDS BIN [BIN...]
# (build first: cargo build --release; copy the old binary aside for an A/B).
set -euo pipefail
N=$1 READS=$2 ROUNDS=$3; shift 3
PORT=${PORT:-17811}
URL="127.0.0.1:$PORT"
OUT=$(mktemp -d)
GPID="" LPID=""
trap 'kill $GPID $LPID 2>/dev/null || true' EXIT
version() { curl -s -m 10 "$URL/metrics" | awk '$1=="rollcall_presence_version"{print $2}'; }
rss() { awk '/VmRSS/{print $2}' "/proc/$GPID/status"; }
cpu() { awk '{print $14+$15}' "/proc/$GPID/stat"; }
TICK=$(getconf CLK_TCK)
# reads FILE [CURL ARGS...]: READS back-to-back reads into FILE; prints
# the versions per second meanwhile.
reads() {
  local file=$1 v0 t0; shift
  v0=$(version) t0=$(date +%s.%N)
  for _ in $(seq "$READS"); do
    curl -s -o /dev/null -w '%{time_total} %{time_starttransfer} %{size_download}\n' "$@" "$URL/v1/presence" >> "$file"
  done
  awk -v a="$v0" -v b="$(version)" -v t="$t0" -v u="$(date +%s.%N)" 'BEGIN{printf "%.1f", (b-a)/(u-t)}'
}
summary() {
  python3 - "$1" "$2" <<'PY'
import sys
rows=[l.split() for l in open(sys.argv[1]) if l.strip()]
tot=sorted(float(r[0])*1000 for r in rows); ttfb=sorted(float(r[1])*1000 for r in rows)
q=lambda v,p: v[min(len(v)-1,int(p*len(v)))]
print(f"total p50 {q(tot,.5):.0f} p99 {q(tot,.99):.0f} max {tot[-1]:.0f} ms; first byte p50 {q(ttfb,.5):.1f} p99 {q(ttfb,.99):.1f} ms; "
      f"{int(rows[-1][2])/1e6:.1f} MB/answer; {len(rows)} reads; {sys.argv[2]} versions/s")
PY
}
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    tag="$(basename "$bin")-$round"
    "$bin" serve --bind "$URL" --max-entries "$((N + 1000))" --presence-ttl 2h \
      --max-beacon-rows "$((N + 1000))" > "$OUT/$tag.log" 2>&1 & GPID=$!
    sleep 1
    "$bin" load --url "ws://$URL/" --clients 1 --fill "$N" --duration 1s --json > /dev/null
    sleep 2
    q=$(reads "$OUT/$tag.quiet")
    "$bin" load --url "ws://$URL/" --clients 20 --beacon-interval 100ms --duration 600s --json > /dev/null 2>&1 & LPID=$!
    sleep 3
    p=$(reads "$OUT/$tag.plain")
    g=$(reads "$OUT/$tag.gzip" -H 'accept-encoding: gzip')
    base=$(rss)
    slow=()
    for _ in 1 2 3 4 5 6 7 8; do
      curl -s -o /dev/null --limit-rate 1M -m 10 "$URL/v1/presence" & slow+=($!)
    done
    peak=$base
    for _ in $(seq 105); do r=$(rss); if (( r > peak )); then peak=$r; fi; sleep 0.1; done
    wait "${slow[@]}" 2>/dev/null || true
    c0=$(cpu); sleep 10; c1=$(cpu)
    curl -s -N -H 'accept-encoding: gzip' -m 20 -o /dev/null -w '%{size_download}' \
      "$URL/v1/presence/stream" > "$OUT/$tag.sse" || true
    c2=$(cpu)
    kill "$LPID" 2>/dev/null || true; wait "$LPID" 2>/dev/null || true; LPID=""
    echo "== $tag ($N rows, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "quiet: $(summary "$OUT/$tag.quiet" "$q")"
    echo "plain: $(summary "$OUT/$tag.plain" "$p")"
    echo "gzip:  $(summary "$OUT/$tag.gzip" "$g")"
    echo "slow:  RSS $((base / 1024)) MB before 8 slow readers, peak $((peak / 1024)) MB (+$(((peak - base) / 1024)) MB)"
    echo "sse:   gateway CPU $(((c1 - c0) * 100 / (10 * TICK)))% with the beacons alone, $(((c2 - c1) * 100 / (20 * TICK)))% with one gzip SSE reader for 20 s; it got $(($(cat "$OUT/$tag.sse") / 1000000)) MB"
    kill "$GPID"; wait "$GPID" 2>/dev/null || true; GPID=""
  done
done
