#!/usr/bin/env bash
# Gate lookups of two builds side by side (A/B), with their anchors, in one
# run on one private redis-server: raw `redis-benchmark -t get`, the minimal
# actix-web + Redis pass-through (benches/passthrough), build A and build B,
# each driven by `wrk -t2 -c64` with benches/gate/status.lua, alternating,
# ROUNDS times. A and B run at once on their own Redis databases (1 and 2);
# the pass-through reads database 0, whose keys are the IDs, each holding one
# of rollcall's values. Besides requests/s and latency it prints the CPU each
# process (server, Redis) spent per request, from /proc.
#
# usage: benches/gate/ab.sh A_BIN B_BIN PASSTHROUGH_BIN
#   env: ROUNDS (2), DUR (seconds per wrk run, 10), REGISTER (the city,
#        fixtures/chongwen/register.csv), PERF (a file: `perf record -g` of
#        B during its last run goes there)
set -euo pipefail
A=$1 B=$2 PT=$3
ROUNDS=${ROUNDS:-2} DUR=${DUR:-10}
REGISTER=${REGISTER:-fixtures/chongwen/register.csv}
lua=benches/gate/status.lua
work=$(mktemp -d /tmp/gate-ab.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # user + system, in ticks
hz=$(getconf CLK_TCK)

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
rpid=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
tail -n +2 "$REGISTER" | cut -d, -f1 >"$work/ids"
admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

declare -A url pid gate
start() { # name bin db
  local p; p=$(port)
  ROLLCALL_ADMIN_TOKEN=$admin "$2" serve --data "$work/data-$1" --listen "127.0.0.1:$p" \
    --redis "redis://127.0.0.1:$rport/$3" >"$work/serve-$1.log" 2>&1 &
  pid[$1]=$!
  url[$1]=http://127.0.0.1:$p
  until curl -sf "${url[$1]}/readyz" >/dev/null; do sleep 0.1; done
  curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: text/csv' \
    --data-binary @"$REGISTER" "${url[$1]}/v1/register" >/dev/null
  gate[$1]=$(curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"role":"gate","name":"bench gate"}' "${url[$1]}/v1/tokens" |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
  # Warm: every resident looked up, in order (misses are written back).
  wrk -t1 -c32 -d120s -s benches/gate/warm.lua "${url[$1]}" -- "${gate[$1]}" "$work/ids" | tail -1
}
start A "$A" 1
start B "$B" 2
# The pass-through's keys: every ID, holding one of B's cached values.
value=$(redis-cli -p "$rport" -n 2 --raw get "$(redis-cli -p "$rport" -n 2 --scan --pattern 'rc:s:*' | head -1)")
awk -v v="$value" '{printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length($0), $0, length(v), v}' \
  "$work/ids" | redis-cli -p "$rport" -n 0 --pipe >/dev/null
pport=$(port)
"$PT" "127.0.0.1:$pport" "redis://127.0.0.1:$rport/0" 2 >"$work/passthrough.log" 2>&1 &
pid[P]=$!
url[P]=http://127.0.0.1:$pport
gate[P]=${gate[B]}
until curl -s -o /dev/null "${url[P]}/v1/status/x"; do sleep 0.05; done
echo "keys: db0 $(redis-cli -p "$rport" -n 0 dbsize), A $(redis-cli -p "$rport" -n 1 dbsize), B $(redis-cli -p "$rport" -n 2 dbsize)"

uptime
for round in $(seq "$ROUNDS"); do
  r0=$(cpu $rpid)
  rb=$(redis-benchmark -p "$rport" -t get -n 300000 -r 1000000 -c 50 --csv | grep '^"GET"' | tr -d '"')
  r1=$(cpu $rpid)
  echo "round $round redis-benchmark $(echo "$rb" | cut -d, -f2) req/s  p99 $(echo "$rb" | cut -d, -f7) ms  redis $(python3 -c "print(round(($r1-$r0)/$hz/300000*1e6, 2))") us/req"
  for who in P A B; do
    if [ -n "${PERF:-}" ] && [ "$who" = B ] && [ "$round" = "$ROUNDS" ]; then
      perf record -e cpu-clock -F 999 -g -p "${pid[B]}" -o "$PERF" -- sleep "$DUR" >/dev/null 2>&1 &
    fi
    s0=$(cpu "${pid[$who]}") r0=$(cpu $rpid)
    line=$(wrk -t2 -c64 -d"${DUR}s" -s "$lua" "${url[$who]}" -- "${gate[$who]}" "$work/ids" | tail -1)
    s1=$(cpu "${pid[$who]}") r1=$(cpu $rpid)
    n=$(echo "$line" | awk '{print $2}')
    echo "round $round $who $line  server $(python3 -c "print(round(($s1-$s0)/$hz/($n*$DUR)*1e6, 2))") us/req  redis $(python3 -c "print(round(($r1-$r0)/$hz/($n*$DUR)*1e6, 2))") us/req"
  done
done
uptime
