#!/usr/bin/env bash
# Gate lookups of two rollcall builds and the pass-through, rounds alternated,
# under `wrk -t2 -c64` with benches/gate/status.lua: lookups/s, p99, p99.9,
# and the server's and its Redis's CPU per lookup (/proc/PID/stat).
# Each build has a private Redis of its own (two servers on one Redis would
# each take the other's values for stale ones); the pass-through reads the
# first, whose keys fill_ids.py adds.
#
# usage: A=OLD_BIN B=NEW_BIN [AENV="X=1"] [BENV=...] [ROUNDS=3] [SECS=10] \
#        benches/compare/probes/gate_ab.sh
set -uo pipefail
A=${A:?A=the first rollcall binary}; B=${B:?B=the second rollcall binary}
PT=${PT:-target/release/examples/passthrough}
WORK=${WORK:-/tmp/rollcall-compare}; N=${N:-1000000}
city=$WORK/city-$N; data=$WORK/data-$N; P=$WORK/probe; mkdir -p "$P"
ADMIN=compare-admin-token-0123456789abcdef0123456789
SECS=${SECS:-10}; LUA=benches/gate/status.lua
redis-server --port 47851 --bind 127.0.0.1 --save "" --appendonly no >"$P/redis-a.log" 2>&1 & ra=$!
redis-server --port 47854 --bind 127.0.0.1 --save "" --appendonly no >"$P/redis-b.log" 2>&1 & rb=$!
trap 'kill ${pp:-} ${pa:-} ${pb:-} $ra $rb 2>/dev/null || true' EXIT
sleep 0.4
start() { # BIN PORT ENV REDIS_PORT
  rm -rf "$P/ab-$2"; cp -r "$data" "$P/ab-$2"
  env ${3:-} ROLLCALL_ADMIN_TOKEN=$ADMIN "$1" serve --data "$P/ab-$2" --listen "127.0.0.1:$2" \
    --redis "redis://127.0.0.1:$4" >"$P/ab-$2.log" 2>&1 &
  echo $!
}
pa=$(start "$A" 47850 "${AENV:-}" 47851); pb=$(start "$B" 47853 "${BENV:-}" 47854)
for p in 47850 47853; do until curl -sf "http://127.0.0.1:$p/readyz" >/dev/null; do sleep 0.1; done; done
tok() { curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"role":"gate","name":"g"}' "http://127.0.0.1:$1/v1/tokens" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])'; }
ta=$(tok 47850); tb=$(tok 47853)
# Warm: most residents looked up once, so answers come from Redis.
wrk -t2 -c32 -d5s -s $LUA http://127.0.0.1:47850 -- "$ta" "$city/ids.txt" >/dev/null
wrk -t2 -c32 -d5s -s $LUA http://127.0.0.1:47853 -- "$tb" "$city/ids.txt" >/dev/null
python3 benches/compare/fill_ids.py "$city/ids.txt" 47851
"$PT" 127.0.0.1:47852 redis://127.0.0.1:47851 2 >"$P/ab-pt.log" 2>&1 & pp=$!
until curl -s -o /dev/null http://127.0.0.1:47852/v1/status/x; do sleep 0.05; done
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
for i in $(seq "${ROUNDS:-3}"); do
  for who in pt A B; do
    case $who in
      pt) pid=$pp; url=http://127.0.0.1:47852; t=$ta; r=$ra ;;
      A) pid=$pa; url=http://127.0.0.1:47850; t=$ta; r=$ra ;;
      B) pid=$pb; url=http://127.0.0.1:47853; t=$tb; r=$rb ;;
    esac
    c0=$(cpu $pid); r0=$(cpu $r)
    line=$(wrk -t2 -c64 -d"${SECS}s" -s $LUA "$url" -- "$t" "$city/ids.txt" | tail -1)
    c1=$(cpu $pid); r1=$(cpu $r)
    echo "$who $line" | awk -v sc=$((c1 - c0)) -v rc=$((r1 - r0)) -v s="$SECS" -v hz="$(getconf CLK_TCK)" \
      '{n = $3 * s; printf "round '"$i"' %-2s %8d/s  p99 %s  p99.9 %s  | CPU per lookup: server %.2f us, Redis %.2f us\n", $1, $3, $7, $9, sc * 1e6 / hz / n, rc * 1e6 / hz / n}'
  done
done
