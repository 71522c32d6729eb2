#!/usr/bin/env bash
# Gate lookups through HTTP from Redis against raw redis-benchmark GET on the
# same Redis, in one run. Usage: benches/gate/run.sh [target/release/rollcall]
# Prints both figures and their ratio; see docs/benchmarks.md.
set -euo pipefail
BIN=${1:-target/release/rollcall}
DUR=${DUR:-15}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
rport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
hport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$rport" --save "" --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
sleep 0.5
ADMIN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
ROLLCALL_ADMIN_TOKEN=$ADMIN "$BIN" serve --data "$work/data" --listen "127.0.0.1:$hport" \
  --redis "redis://127.0.0.1:$rport" >"$work/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hport/readyz" >/dev/null && break; sleep 0.1; done
curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: text/csv' \
  --data-binary @fixtures/chongwen/register.csv "http://127.0.0.1:$hport/v1/register" >/dev/null
GATE=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"role":"gate","name":"bench gate"}' "http://127.0.0.1:$hport/v1/tokens" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
tail -n +2 fixtures/chongwen/register.csv | cut -d, -f1 >"$work/ids"
# Warm the cache: every resident looked up once (misses are written back).
wrk -t1 -c32 -d60s -s benches/gate/warm.lua "http://127.0.0.1:$hport" -- "$GATE" "$work/ids" | tail -1
echo "keys in redis: $(redis-cli -p "$rport" dbsize)"
echo "== raw redis-benchmark GET (1M-key space, no pipelining, 50 clients)"
redis-benchmark -p "$rport" -t get -n 400000 -r 1000000 -c 50 -q | tr '\r' '\n' | grep 'GET:' | tail -1
echo "== rollcall GET /v1/status over HTTP, flat out (wrk -t2 -c64, ${DUR}s)"
wrk -t2 -c64 -d"${DUR}s" -s benches/gate/status.lua "http://127.0.0.1:$hport" -- "$GATE" "$work/ids"
echo "== at a set 20,000 req/s (rollcall load; latency from each request's scheduled start)"
"$BIN" load --mode gate --target "http://127.0.0.1:$hport" --token "$GATE" --ids "$work/ids" \
  --concurrency 64 --rate 20000 --duration "$DUR"
