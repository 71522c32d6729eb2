#!/usr/bin/env bash
# Exports beside uploads (issue 14). Usage: benches/exports/run.sh [target/release/rollcall]
# With the chongwen fixture (56,717 residents) imported through the API and a
# round over the whole city:
#  1. single-record uploads at a set rate, alone, then while four clients loop
#     whole-register XLSX exports (same server, same run): p50/p99/max;
#     gate lookups likewise;
#  2. 400 concurrent whole-register XLSX exports: how many were answered and
#     how many shed with 503 overloaded (and how fast), and the server's RSS
#     idle, at its peak, and 30 s after.
# See docs/benchmarks.md ("Exports beside uploads").
set -euo pipefail
BIN=${1:-target/release/rollcall}
DUR=${DUR:-20}
RATE=${RATE:-200}
STORM=${STORM:-400}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
rport=$(port); hport=$(port)
base="http://127.0.0.1:$hport"
redis-server --port "$rport" --save "" --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
sleep 0.5
ADMIN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
ROLLCALL_ADMIN_TOKEN=$ADMIN "$BIN" serve --data "$work/data" --listen "127.0.0.1:$hport" \
  --redis "redis://127.0.0.1:$rport" >"$work/serve.log" 2>&1 &
spid=$!
for _ in $(seq 200); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
auth=(-H "Authorization: Bearer $ADMIN")
curl -sf "${auth[@]}" -H 'Content-Type: text/csv' --data-binary @fixtures/chongwen/register.csv "$base/v1/register" >/dev/null
curl -sf "${auth[@]}" -H 'Content-Type: text/csv' --data-binary @fixtures/chongwen/heads.csv "$base/v1/heads" >/dev/null
token() { curl -sf "${auth[@]}" -H 'Content-Type: application/json' -d "$1" "$base/v1/tokens" |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])'; }
SCANNER=$(token '{"role":"scanner","name":"bench scanner","site":"S01"}')
GATE=$(token '{"role":"gate","name":"bench gate"}')
scope=$(tail -n +2 fixtures/chongwen/register.csv | cut -d, -f4 | cut -d/ -f1 | sort -u |
  python3 -c 'import json,sys;print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')
round=$(python3 - "$scope" <<'PY'
import json, sys, datetime as dt
now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(microsecond=0)
print(json.dumps({"name": "bench", "scope": json.loads(sys.argv[1]),
  "opens_at": (now - dt.timedelta(hours=12)).isoformat(), "deadline": (now + dt.timedelta(hours=12)).isoformat()}))
PY
)
RID=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' -d "$round" "$base/v1/rounds" |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
XLSX="$base/v1/rounds/$RID/missing?format=xlsx"
tail -n +2 fixtures/chongwen/register.csv | cut -d, -f1 >"$work/ids"
curl -sf "${auth[@]}" -o "$work/one.xlsx" -w 'one whole-register XLSX: %{size_download} bytes in %{time_total} s\n' "$XLSX"

ingest() { "$BIN" load --mode ingest --target "$base" --token "$SCANNER" --ids "$work/ids" \
  --batch 1 --concurrency 4 --rate "$RATE" --duration "$DUR" --json; }
gate() { "$BIN" load --mode gate --target "$base" --token "$GATE" --ids "$work/ids" \
  --concurrency 4 --rate "$RATE" --duration "$DUR" --json; }
summary() { python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency"]
print("  ok %d failed %d  p50 %.2f ms  p99 %.2f ms  max %.2f ms" % (
    r["ok_requests"], r["failed_requests"], l["p50_ms"], l["p99_ms"], l["max_ms"]))'; }

echo "== 1a. single-record uploads at $RATE/s, 4 in flight, ${DUR}s, no exports"
ingest | summary
echo "== 1b. gate lookups at $RATE/s, no exports"
gate | summary
echo "== 1c. the same uploads while 4 clients loop whole-register XLSX exports"
: >"$work/loops"
for _ in 1 2 3 4; do
  (while :; do curl -s "${auth[@]}" -o /dev/null -w '%{http_code}\n' "$XLSX" >>"$work/loops"; done) &
done
sleep 2
ingest | summary
echo "== 1d. gate lookups while the exports loop"
gate | summary
kill $(jobs -p | tail -n +3) 2>/dev/null || true
sleep 2
echo "  exports answered during 1c+1d: $(sort "$work/loops" | uniq -c | tr '\n' ' ')"

echo "== 2. $STORM concurrent whole-register XLSX exports; RSS sampled during and 30 s after"
sleep 5
python3 benches/exports/storm.py --url "$XLSX" --token "$ADMIN" --pid "$spid" --n "$STORM" --after 30
