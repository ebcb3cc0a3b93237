#!/usr/bin/env bash
# One real gateway (release build) as a member of a virtual fleet
# (`rollcall load fleet-sim`): its RSS, CPU per remote change, convergence
# and propagation p99, and Redis's CPU and output bytes.
# Usage: benches/vfleet.sh GATEWAYS ROWS CHANGES_PER_SEC [SECONDS]
# Needs redis-server and redis-cli; builds nothing (cargo build --release first).
set -euo pipefail
G=$1 N=$2 R=$3 W=${4:-20}
BIN=${BIN:-target/release/rollcall}
RP=${RP:-16400} HP=${HP:-16401}
OUT=$(mktemp -d)
redis-server --port "$RP" --save '' --appendonly no >/dev/null 2>&1 & RPID=$!
trap 'kill $GPID $RPID $SPID 2>/dev/null || true' EXIT
sleep 0.5
# The fleet fills Redis first; the real gateway joins once it is populated.
nice "$BIN" load fleet-sim --redis "redis://127.0.0.1:$RP" --gateways "$G" --rows "$N" \
  --changes-per-sec "$R" --duration "$((W + 40))s" --observe "http://127.0.0.1:$HP" \
  --samples 500 --json > "$OUT/sim.json" & SPID=$!
until [ "$(redis-cli -p "$RP" scard rollcall:nodes)" -ge "$G" ] && \
      [ "$(redis-cli -p "$RP" dbsize)" -ge "$((G * 4))" ]; do sleep 0.5; done
sleep 2
"$BIN" serve --bind "127.0.0.1:$HP" --fleet "redis://127.0.0.1:$RP" --node-id real \
  --max-entries "$((N + G + 100))" >/dev/null 2>&1 & GPID=$!
until [ "$(curl -s "127.0.0.1:$HP/v1/presence/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["byMode"].get("vfleet",0))' 2>/dev/null || echo 0)" -ge "$N" ]; do sleep 0.2; done
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rinfo() { redis-cli -p "$RP" info "$1" | tr -d '\r' | awk -F: -v k="$2" '$1==k{print $2}'; }
c0=$(cpu "$GPID"); r0=$(rinfo cpu used_cpu_sys); u0=$(rinfo cpu used_cpu_user); o0=$(rinfo stats total_net_output_bytes)
sleep "$W"
c1=$(cpu "$GPID"); r1=$(rinfo cpu used_cpu_sys); u1=$(rinfo cpu used_cpu_user); o1=$(rinfo stats total_net_output_bytes)
rss=$(awk '/VmRSS/{print $2}' "/proc/$GPID/status")
wait "$SPID" || true
python3 - "$OUT/sim.json" <<PY
import json,sys,os
s=json.load(open(sys.argv[1])); tick=os.sysconf('SC_CLK_TCK')
g,n,r,w=$G,$N,$R,$W
cpu=($c1-$c0)/tick; rcpu=($r1-$r0)+($u1-$u0); out=$o1-$o0
o=s.get('observed') or {}
print(f"G={g} N={n} R={r}/s (reached {s['changesPerSec']:.0f}/s, errors {s['errors']}): gateway RSS {$rss/1024:.0f} MB "
      f"({$rss*1024/max(n,1):.0f} B/row), CPU {cpu/w*100:.0f}% = {cpu/(r*w)*1e6:.1f} us/remote change; "
      f"join: all {n} rows {o.get('convergence',{}).get('convergedMs')} ms after first answer; "
      f"propagation p50 {o.get('p50Ms')} ms p99 {o.get('p99Ms')} ms ({o.get('seen')}/{o.get('samples')}); "
      f"redis CPU {rcpu/w*100:.0f}%, output {out/w/1e6:.2f} MB/s to 1 subscriber ({out/max(r*w,1):.0f} B/change)")
PY
