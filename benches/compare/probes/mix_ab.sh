#!/usr/bin/env bash
# A round day's mix, two builds alternated (ABBA): scanners' ingest at a set
# rate beside wrk gates flat out, each round on a fresh copy of the data and
# an emptied Redis, after a full warm-up. Prints per round the gates' wrk
# line, the lookups hedged and fallen back, and the ingest's achieved rate,
# batch p99 and p99.9 and failures.
#   A=old/rollcall B=target/release/rollcall PAIRS=3 RATE=100000 benches/compare/probes/mix_ab.sh
set -euo pipefail
A=${A:?A=path of the first build}
B=${B:-target/release/rollcall}
WORK=${WORK:-/tmp/rollcall-compare}
N=${N:-1000000}
PAIRS=${PAIRS:-3}
RATE=${RATE:-100000}
SECONDS_=${SECONDS_:-10}
P=$WORK/probe; mkdir -p "$P"
ADMIN=compare-admin-token-0123456789abcdef0123456789
ids=$WORK/city-$N/ids.txt
port=47850 rport=47851
redis-server --port $rport --bind 127.0.0.1 --save "" --appendonly no >"$P/mix-redis.log" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null || true' EXIT
sleep 0.5
token() {
  curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$1" \
    "http://127.0.0.1:$port/v1/tokens" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])'
}
one() { # NAME BIN
  local d=$P/mix-data pid gate scanner line counts ingest
  rm -rf "$d" && cp -r "$WORK/data-$N" "$d"
  redis-cli -p $rport flushall >/dev/null
  ROLLCALL_ADMIN_TOKEN=$ADMIN "$2" serve --data "$d" --listen 127.0.0.1:$port --redis redis://127.0.0.1:$rport >>"$P/mix.log" 2>&1 &
  pid=$!
  until curl -s "http://127.0.0.1:$port/readyz" | grep -q '"redis":"ok"'; do sleep 0.1; done
  gate=$(token '{"role":"gate","name":"mix gate"}')
  scanner=$(token '{"role":"scanner","name":"mix S01","site":"S01"}')
  wrk -t1 -c32 -d120s -s benches/gate/warm.lua "http://127.0.0.1:$port" -- "$gate" "$ids" >/dev/null
  sleep 2
  "$B" load --target "http://127.0.0.1:$port" --token "$scanner" --ids "$ids" --rate "$RATE" --batch 500 \
    --concurrency 4 --duration "$SECONDS_" --json >"$P/mix-ingest.json" &
  local lp=$!
  line=$(wrk -t2 -c64 -d"${SECONDS_}s" -s benches/gate/status.lua "http://127.0.0.1:$port" -- "$gate" "$ids" | tail -1)
  wait $lp
  counts=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$port/metrics" |
    awk '/^rollcall_cache_hedged_total/ { h = $2 } /^rollcall_cache_fallbacks_total/ { f = $2 }
         END { printf "hedged %d, fallbacks %d", h, f }')
  ingest=$(python3 -c "import json; d = json.load(open('$P/mix-ingest.json')); l = d['latency']
print(f\"{d['items_per_s']:.0f} records/s, batch p99 {l['p99_ms']:.1f} ms, p99.9 {l['p999_ms']:.1f} ms, {d['failed_requests']} failed\")")
  echo "$1 gates: $line | $counts | ingest: $ingest"
  kill -TERM $pid; wait $pid 2>/dev/null || true
}
for i in $(seq "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then one A "$A"; one B "$B"; else one B "$B"; one A "$A"; fi
done
