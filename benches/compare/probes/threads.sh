#!/usr/bin/env bash
# Per-thread CPU of the server during a flat-out ingest run, and the store's commit metrics.
set -euo pipefail
BIN=${BIN:-target/release/rollcall}
WORK=${WORK:-/tmp/rollcall-compare}
N=${N:-1000000}
P=$WORK/probe; mkdir -p $P
ADMIN=compare-admin-token-0123456789abcdef0123456789
city=$WORK/city-$N
d=$P/thr-data; rm -rf $d; cp -r $WORK/data-$N $d
# With REDIS=1, a private redis-server on 47831 holds the gate cache (as run.sh's ingest does).
extra=()
if [ -n "${REDIS:-}" ]; then
  redis-server --port 47831 --bind 127.0.0.1 --save "" --appendonly no >$P/redis.log 2>&1 &
  rpid=$!; trap 'kill $rpid 2>/dev/null || true' EXIT; sleep 0.3
  extra=(--redis redis://127.0.0.1:47831)
fi
ROLLCALL_ADMIN_TOKEN=$ADMIN $BIN serve --data $d --listen 127.0.0.1:47830 "${extra[@]}" >$P/thr.log 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:47830/readyz >/dev/null; do sleep 0.1; done
tok=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"role":"scanner","name":"x","site":"S01"}' http://127.0.0.1:47830/v1/tokens | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
snap() { for t in /proc/$pid/task/*; do echo "$(cat $t/comm)|$(awk '{print $14+$15}' $t/stat)"; done | sort; }
snap >$P/t0
rc0=$([ -n "${rpid:-}" ] && awk '{print $14+$15}' /proc/$rpid/stat || echo 0)
curl -s http://127.0.0.1:47830/metrics | grep -E "^rollcall_store_(commit_seconds|group_size)_(sum|count)" >$P/m0 || true
$BIN load --target http://127.0.0.1:47830 --token $tok --ids $city/ids.txt --flat-out --batch 500 --concurrency ${C:-4} --duration 15 --json | python3 -c 'import json,sys;r=json.load(sys.stdin);print("ingest", round(r["items_per_s"]), "records/s", r["items"], "p50", r["latency"]["p50_ms"], "ms")'
snap >$P/t1
rc1=$([ -n "${rpid:-}" ] && awk '{print $14+$15}' /proc/$rpid/stat || echo 0)
[ -z "${rpid:-}" ] || echo "  redis-server         $(python3 -c "print(f'{($rc1 - $rc0) / 100:6.2f}')") s"
curl -s http://127.0.0.1:47830/metrics | grep -E "^rollcall_store_(commit_seconds|group_size)_(sum|count)" >$P/m1 || true
P="$P" python3 - <<'PY'
import os
from collections import defaultdict
def load(p):
    d=defaultdict(int)
    for l in open(p):
        name,v=l.rstrip('\n').rsplit('|',1); d[name]+=int(v)
    return d
a,b=load(os.environ['P']+'/t0'),load(os.environ['P']+'/t1')
tot=0
for k in sorted(b, key=lambda k: -(b[k]-a.get(k,0))):
    dv=(b[k]-a.get(k,0))/100
    tot+=dv
    if dv>0.05: print(f"  {k:20s} {dv:6.2f} s")
print(f"  total               {tot:6.2f} s")
def m(p):
    out={}
    for l in open(p):
        k,v=l.split()[0],float(l.split()[-1]); out[k.split('{')[0]]=out.get(k.split('{')[0],0)+v
    return out
m0,m1=m(os.environ['P']+'/m0'),m(os.environ['P']+'/m1')
d={k:m1[k]-m0.get(k,0) for k in m1}
print(d)
if d.get('rollcall_store_commit_seconds_count'):
    print("commits", d['rollcall_store_commit_seconds_count'], "mean commit ms", 1000*d['rollcall_store_commit_seconds_sum']/d['rollcall_store_commit_seconds_count'])
if d.get('rollcall_store_group_size_count'):
    print("mean group size", d['rollcall_store_group_size_sum']/d['rollcall_store_group_size_count'])
PY
kill -TERM $pid; wait $pid || true
