#!/usr/bin/env bash
# RSS after ingesting the 1M city's 95% over HTTP, with a given malloc env.
set -euo pipefail
BIN=${BIN:-target/release/rollcall}
WORK=${WORK:-/tmp/rollcall-compare}
N=${N:-1000000}
P=$WORK/probe; mkdir -p $P
ADMIN=compare-admin-token-0123456789abcdef0123456789
city=$WORK/city-$N
d=$P/arena-data; rm -rf $d
$BIN import register $city/register.csv --data $d >/dev/null
env "$@" ROLLCALL_ADMIN_TOKEN=$ADMIN $BIN serve --data $d --listen 127.0.0.1:47820 >$P/arena.log 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:47820/readyz >/dev/null; do sleep 0.1; done
r0=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
tok=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"role":"scanner","name":"x","site":"S01"}' http://127.0.0.1:47820/v1/tokens | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
$BIN load --target http://127.0.0.1:47820 --token $tok --ids $city/ids.txt --fraction 0.95 --once --batch 500 --concurrency 4 --duration 3600 --json | python3 -c 'import json,sys;r=json.load(sys.stdin);print("ingest", round(r["items_per_s"]), "records/s", r["items"])'
r1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
echo "env: $* rss_register_mb=$((r0/1024)) rss_after_ingest_mb=$((r1/1024))"
kill -TERM $pid; wait $pid || true
