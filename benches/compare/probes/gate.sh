#!/usr/bin/env bash
set -euo pipefail
BIN=${BIN:-target/release/rollcall}
WORK=${WORK:-/tmp/rollcall-compare}
N=${N:-1000000}
P=$WORK/probe; mkdir -p $P
ADMIN=compare-admin-token-0123456789abcdef0123456789
city=$WORK/city-$N
d=$P/gate-data; rm -rf $d; cp -r $WORK/data-$N $d
redis-server --port 47841 --bind 127.0.0.1 --save "" --appendonly no >$P/redis.log 2>&1 &
rpid=$!
sleep 0.5
ROLLCALL_ADMIN_TOKEN=$ADMIN $BIN serve --data $d --listen 127.0.0.1:47840 --redis redis://127.0.0.1:47841 >$P/gate.log 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:47840/readyz >/dev/null; do sleep 0.1; done
gate=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"role":"gate","name":"g"}' http://127.0.0.1:47840/v1/tokens | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
wrk -t1 -c32 -d120s -s benches/gate/warm.lua http://127.0.0.1:47840 -- $gate $city/ids.txt | tail -1
perf record -e cpu-clock -F 999 -g -p $pid -o $P/gate.perf -- sleep 10 >/dev/null 2>&1 &
ppid=$!
c0=$(awk '{print $14+$15}' /proc/$pid/stat); r0=$(awk '{print $14+$15}' /proc/$rpid/stat)
wrk -t2 -c64 -d10s -s benches/gate/status.lua http://127.0.0.1:47840 -- $gate $city/ids.txt | tail -1
c1=$(awk '{print $14+$15}' /proc/$pid/stat); r1=$(awk '{print $14+$15}' /proc/$rpid/stat)
echo "server cpu $(( (c1-c0) ))cs redis cpu $(( (r1-r0) ))cs"
wait $ppid || true
kill -TERM $pid; wait $pid || true; kill $rpid
