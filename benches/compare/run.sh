#!/usr/bin/env bash
# rollcall against DuckDB and PostgreSQL on the same generated city, in one
# run, so the ratios hold on a shared, noisy machine. Writes
# benches/compare/results.md (the table) and results.jsonl (raw) beside it.
#
# usage: benches/compare/run.sh [SIZE...]          (default: 1000000 10000000)
#
# For each size: `rollcall gen` makes the city; make_records.py picks the
# sampled 95% by FNV-1a of the ID (the same people `rollcall load --fraction`
# sends); DuckDB and PostgreSQL load both files and run the close (anti-join
# for the missing set, then coverage of every area node); rollcall imports the
# register offline, takes the same people's records over HTTP (`rollcall
# load --once`, batches of 500), and is timed on `POST /v1/rounds/{id}/close`
# (in-process status cache: compute, durable close event, flips written to
# the cache). Then memory (RSS) and restart (replay) are read off the server.
# All three must find the same missing count, or the run fails.
#
# At the first size, also: ingest flat out over HTTP against PostgreSQL COPY
# and INSERT (500 rows per commit), in INGEST_ROUNDS alternated rounds (2 by
# default), and gate lookups through HTTP from Redis
# against raw `redis-benchmark -t get` on the same private Redis.
#
# Gate lookups are also compared with the ceiling: benches/passthrough, an
# actix-web server doing one Redis GET per request, on the same Redis (its
# keys are the IDs, each holding one of rollcall's values), with the same wrk
# script. Before the first round the server and Redis are left to go idle
# (the ingest's snapshot, for one). Then ROUNDS rounds (4 by default), each
# one `redis-benchmark` and one `wrk` run of both servers, in ABBA order
# (pass-through first in odd rounds, rollcall first in even ones) so that a
# machine growing busier or quieter during the rounds favours neither; the
# CPU each server spent per lookup is recorded beside its rate.
# With CLOSE_BENCH=1, also the engine's criterion bench of the 10 M close
# (`close_and_coverage_10M`: compute only, no HTTP), for the summary.
#
# The summary at the end (results.md's first table) gives every ratio of
# issue 18's Done-when.
#
# Environment: WORK (scratch, default /tmp/rollcall-compare), SEED (1),
# FRACTION (0.95), CONCURRENCY (ingest connections, 4), INGEST_SECONDS (20),
# INGEST_ROUNDS (2),
# GATE_RATE (a second paced gate rate, 5000),
# GATE_SECONDS (15), PG_ROWS (500000), SKIP_BUILD (use the existing binary),
# BIN (the rollcall binary, default target/release/rollcall), EXTRAS=0 (skip
# ingest and gates), KEEP_RESULTS=1 (append to results.jsonl: sizes run
# separately end up in one table).
# Needs: a release build, python3 with duckdb (`pip install duckdb`), psql
# with a local PostgreSQL that lets the current user create databases,
# redis-server, redis-benchmark, wrk, curl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
WORK=${WORK:-/tmp/rollcall-compare}
SEED=${SEED:-1}
FRACTION=${FRACTION:-0.95}
CONCURRENCY=${CONCURRENCY:-4}
INGEST_SECONDS=${INGEST_SECONDS:-20}
INGEST_ROUNDS=${INGEST_ROUNDS:-2}
GATE_SECONDS=${GATE_SECONDS:-15}
PG_ROWS=${PG_ROWS:-500000}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
bin=${BIN:-$root/target/release/rollcall}
passthrough=${PASSTHROUGH:-$root/target/release/examples/passthrough}
ROUNDS=${ROUNDS:-4}
ADMIN=compare-admin-token-0123456789abcdef0123456789

[ -n "${SKIP_BUILD:-}" ] || (cd "$root" && cargo build --release --locked && cargo build --release --locked --example passthrough)
# SKIP_BUILD on a fresh clone: say what is missing rather than wait forever
# for a server that was never started.
for b in "$bin" "$passthrough"; do
  [ -x "$b" ] || { echo "no $b: build it (cargo build --release --locked [--example passthrough]) or drop SKIP_BUILD" >&2; exit 1; }
done
python3 -c 'import duckdb' 2>/dev/null || pip install duckdb
for c in psql redis-server redis-benchmark wrk curl; do
  command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }
done
mkdir -p "$WORK"
raw=$WORK/results.jsonl
[ -n "${KEEP_RESULTS:-}" ] || : >"$raw"

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "import sys;print(round($(now) - $1, 3))"; }
json_get() { python3 -c "import json,sys;v=json.load(sys.stdin)
for k in sys.argv[1].split('.'): v=v[int(k) if k.isdigit() else k]
print(v)" "$1"; }
emit() { echo "$1" >>"$raw"; echo "$1"; }

SERVER_PID=
# start_server DATA PORT [serve flags]: starts rollcall, waits for /readyz,
# sets READY_S (seconds from exec to ready: the replay).
start_server() {
  local data=$1 port=$2 t0
  shift 2
  t0=$(now)
  ROLLCALL_ADMIN_TOKEN=$ADMIN "$bin" serve --data "$data" --listen "127.0.0.1:$port" "$@" \
    >>"$data.log" 2>&1 &
  SERVER_PID=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$data.log"; exit 1; }
    sleep 0.02
  done
  READY_S=$(since "$t0")
}
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
REDIS_PID=
PT_PID=
cleanup() {
  stop_server
  [ -z "$PT_PID" ] || kill "$PT_PID" 2>/dev/null || true
  [ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT
# CPU seconds the server has used (user + system), from /proc.
cpu_s() { pid_cpu_s "$SERVER_PID"; }
pid_cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat"; }
# quiesce PID...: waits (at most 60 s) until every PID used under 2% of a
# core over one second.
quiesce() {
  local i p a b busy
  for i in $(seq 60); do
    busy=0
    for p in "$@"; do a[$p]=$(pid_cpu_s "$p"); done
    sleep 1
    for p in "$@"; do
      b=$(pid_cpu_s "$p")
      python3 -c "import sys; sys.exit(0 if $b - ${a[$p]} < 0.02 else 1)" || busy=1
    done
    [ $busy = 0 ] && return 0
  done
  echo "quiesce: still busy after 60 s; measuring anyway" >&2
}
# timed_load OUT ARGS...: runs `rollcall load`, its JSON to OUT, and sets
# SRV_CPU (server CPU seconds used meanwhile) and GEN_CPU (the generator's).
timed_load() {
  local out=$1 c0
  shift
  c0=$(cpu_s)
  /usr/bin/time -f '%U %S' -o "$WORK/time.txt" "$bin" load "$@" --json >"$out"
  SRV_CPU=$(python3 -c "print(round($(cpu_s) - $c0, 2))")
  GEN_CPU=$(awk '{print $1 + $2}' "$WORK/time.txt")
}
rss_mb() { awk -v k="$1" '$1==k":"{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }
api() { # METHOD PATH [JSON]
  local url="http://127.0.0.1:$PORT$2"
  if [ $# -ge 3 ]; then
    curl -sf -X "$1" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$3" "$url"
  else
    curl -sf -X "$1" -H "Authorization: Bearer $ADMIN" "$url"
  fi
}
token() { api POST /v1/tokens "$1" | json_get token; }
# "OVER_10MS HEDGED": gate lookups the server itself timed over 10 ms, and
# those answered from the engine because Redis was slow, so far.
server_counts() {
  api GET /metrics | awk '/^rollcall_gate_lookup_seconds_bucket\{le="0.01"\}/ { fast = $2 }
    /^rollcall_gate_lookup_seconds_count/ { all = $2 }
    /^rollcall_cache_hedged_total/ { hedged = $2 }
    END { printf "%d %d\n", all - fast, hedged }'
}
iso() { python3 -c "import datetime as d;print((d.datetime.now(d.timezone(d.timedelta(hours=8)))+d.timedelta(hours=$1)).isoformat(timespec='seconds'))"; }

# The server's own footprint, with nothing loaded: subtracted before
# dividing memory by residents.
PORT=$(free_port)
rm -rf "$WORK/data-empty" "$WORK/data-empty.log"
start_server "$WORK/data-empty" "$PORT"
emit "{\"size\":0,\"what\":\"rollcall_empty\",\"r\":{\"rss_mb\":$(rss_mb VmRSS),\"ready_s\":$READY_S}}"
stop_server

first=${EXTRAS:-1}
for N in "${sizes[@]}"; do
  city=$WORK/city-$N
  echo "== $N residents"
  emit "{\"size\":$N,\"what\":\"machine\",\"r\":{\"loadavg\":\"$(cut -d' ' -f1 /proc/loadavg)\"}}"
  # Each file is written aside and renamed, so an interrupted run never leaves a half file to reuse.
  if [ ! -f "$city/register.csv" ]; then
    rm -rf "$city.tmp"
    "$bin" gen --residents "$N" --seed "$SEED" --out "$city.tmp"
    rm -rf "$city" && mv "$city.tmp" "$city"
  fi
  if [ ! -f "$city/records.csv" ]; then
    python3 "$here/make_records.py" "$city/register.csv" "$city/records.tmp" --fraction "$FRACTION" >/dev/null
    mv "$city/records.tmp" "$city/records.csv"
  fi
  if [ ! -f "$city/ids.txt" ]; then
    tail -n +2 "$city/register.csv" | cut -d, -f1 >"$city/ids.tmp"
    mv "$city/ids.tmp" "$city/ids.txt"
  fi

  echo "-- DuckDB"
  duck=$(python3 "$here/duckdb_close.py" "$city/register.csv" "$city/records.csv")
  emit "{\"size\":$N,\"what\":\"duckdb_close\",\"r\":$duck}"
  echo "-- PostgreSQL"
  pg=$(python3 "$here/pg_close.py" "$city/register.csv" "$city/records.csv")
  emit "{\"size\":$N,\"what\":\"pg_close\",\"r\":$pg}"

  echo "-- rollcall"
  data=$WORK/data-$N
  rm -rf "$data" "$data.log"
  t0=$(now)
  "$bin" import register "$city/register.csv" --data "$data" >/dev/null
  import_s=$(since "$t0")
  PORT=$(free_port)
  start_server "$data" "$PORT"
  replay_register_s=$READY_S
  rss_register=$(rss_mb VmRSS)
  scanner=$(token '{"role":"scanner","name":"bench S01","site":"S01"}')
  # The register holds several subdistricts at these sizes: the round covers them all.
  scopes=$(cut -d, -f4 "$city/register.csv" | tail -n +2 | cut -d/ -f1 | sort -u | python3 -c 'import json,sys;print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')
  round=$(api POST /v1/rounds "{\"name\":\"bench $N\",\"scope\":$scopes,\"opens_at\":\"$(iso -10)\",\"deadline\":\"$(iso 6)\"}" | json_get id)
  ingest=$("$bin" load --target "http://127.0.0.1:$PORT" --token "$scanner" --ids "$city/ids.txt" \
    --fraction "$FRACTION" --once --batch 500 --concurrency "$CONCURRENCY" --duration 36000 --json)
  emit "{\"size\":$N,\"what\":\"rollcall_ingest_once\",\"r\":$ingest}"
  rss_records=$(rss_mb VmRSS)
  # The in-process cache can trail a flat-out ingest by a second or more, and
  # the close answers only once its flips follow that backlog: let it drain,
  # so the figure is the close's own.
  quiesce "$SERVER_PID"
  t0=$(now)
  close=$(api POST "/v1/rounds/$round/close" '{}')
  close_s=$(since "$t0")
  missing=$(echo "$close" | json_get round.counts.missing)
  flipped=$(echo "$close" | json_get flipped)
  rss_close=$(rss_mb VmRSS)
  hwm=$(rss_mb VmHWM)
  records=$(echo "$ingest" | json_get accepted)
  stop_server
  start_server "$data" "$PORT"
  restart_s=$READY_S
  rss_restart=$(rss_mb VmRSS)
  stop_server
  emit "{\"size\":$N,\"what\":\"rollcall_close\",\"r\":{\"import_s\":$import_s,\"replay_register_s\":$replay_register_s,\"rss_register_mb\":$rss_register,\"rss_records_mb\":$rss_records,\"rss_close_mb\":$rss_close,\"hwm_mb\":$hwm,\"records\":$records,\"close_http_s\":$close_s,\"missing\":$missing,\"flipped\":$flipped,\"restart_s\":$restart_s,\"rss_restart_mb\":$rss_restart}}"
  dm=$(echo "$duck" | json_get missing)
  pm=$(echo "$pg" | json_get missing)
  if [ "$dm" != "$missing" ] || [ "$pm" != "$missing" ]; then
    echo "MISMATCH: rollcall $missing, duckdb $dm, postgresql $pm missing" >&2
    exit 1
  fi

  if [ $first = 1 ]; then
    first=0
    echo "-- ingest, flat out: rollcall over HTTP vs PostgreSQL"
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    sleep 0.5
    # INGEST_ROUNDS rounds of rollcall and PostgreSQL, in ABBA order (rollcall
    # first in odd rounds), so that the machine's drift favours neither. Each
    # rollcall round starts a server on a fresh copy of the data as the close
    # left it, over an emptied Redis, and waits for both to go idle; the
    # server of the last round stays up for the gate lookups.
    rm -rf "$WORK/ingest-base" && cp -r "$data" "$WORK/ingest-base"
    rollcall_ingest_round() {
      stop_server
      rm -rf "$WORK/ingest-data" && cp -r "$WORK/ingest-base" "$WORK/ingest-data"
      redis-cli -p "$rport" flushall >/dev/null
      start_server "$WORK/ingest-data" "$PORT" --redis "redis://127.0.0.1:$rport"
      quiesce "$SERVER_PID" "$REDIS_PID"
      timed_load "$WORK/ingest.json" --target "http://127.0.0.1:$PORT" --token "$scanner" --ids "$city/ids.txt" \
        --flat-out --batch 500 --concurrency "$CONCURRENCY" --duration "$INGEST_SECONDS"
      emit "{\"size\":$N,\"what\":\"rollcall_ingest_$1\",\"r\":$(cat "$WORK/ingest.json"),\"server_cpu_s\":$SRV_CPU,\"load_cpu_s\":$GEN_CPU}"
    }
    pg_ingest_round() {
      local pgi
      pgi=$(python3 "$here/pg_ingest.py" "$city/register.csv" --rows "$PG_ROWS" --streams "1,$CONCURRENCY")
      emit "{\"size\":$N,\"what\":\"pg_ingest_$1\",\"r\":$pgi}"
    }
    for i in $(seq "$INGEST_ROUNDS"); do
      if [ $((i % 2)) = 1 ]; then
        rollcall_ingest_round "$i"
        pg_ingest_round "$i"
      else
        pg_ingest_round "$i"
        rollcall_ingest_round "$i"
      fi
    done

    echo "-- gate lookups: rollcall over HTTP from Redis vs redis-benchmark on the same Redis"
    gate=$(token '{"role":"gate","name":"bench gate"}')
    # Warm: every resident looked up once, so every answer comes from Redis.
    wrk -t1 -c32 -d120s -s "$root/benches/gate/warm.lua" "http://127.0.0.1:$PORT" -- "$gate" "$city/ids.txt" | tail -1
    # The pass-through's keys: every ID, holding one of rollcall's values.
    python3 "$here/fill_ids.py" "$city/ids.txt" "$rport"
    keys=$(redis-cli -p "$rport" dbsize)
    pport=$(free_port)
    "$passthrough" "127.0.0.1:$pport" "redis://127.0.0.1:$rport" 2 >"$WORK/passthrough.log" 2>&1 &
    PT_PID=$!
    until curl -s -o /dev/null "http://127.0.0.1:$pport/v1/status/x"; do
      kill -0 "$PT_PID" 2>/dev/null || { tail -20 "$WORK/passthrough.log"; exit 1; }
      sleep 0.05
    done
    quiesce "$SERVER_PID" "$REDIS_PID"
    # wrk_round KIND PORT TOKEN PID I: one wrk run, its line and the CPU
    # its server spent. The pass-through ignores the token but is sent the
    # same one, so both servers get byte-identical requests (a 4-byte stand-in
    # made each of its requests 60 bytes shorter, about 3% of wrk's work).
    # rollcall's rounds also carry what its own histogram saw: lookups over
    # 10 ms inside the server, and lookups answered from the engine because
    # Redis was slow (hedged), so a bad round tells whose time it was.
    wrk_round() {
      local c0 w m0 m1 own=
      c0=$(pid_cpu_s "$4")
      [ "$2" != "$PORT" ] || m0=$(server_counts)
      w=$(wrk -t2 -c64 -d"${GATE_SECONDS}s" -s "$root/benches/gate/status.lua" "http://127.0.0.1:$2" -- "$3" "$city/ids.txt" | tail -1)
      if [ "$2" = "$PORT" ]; then
        m1=$(server_counts)
        own=",\"server\":{\"over_10ms\":$(( ${m1% *} - ${m0% *} )),\"hedged\":$(( ${m1#* } - ${m0#* } ))}"
      fi
      emit "{\"size\":$N,\"what\":\"$1_$5\",\"r\":{\"line\":\"$w\",\"seconds\":$GATE_SECONDS$own},\"server_cpu_s\":$(python3 -c "print(round($(pid_cpu_s "$4") - $c0, 2))")}"
    }
    for i in $(seq "$ROUNDS"); do
      rb=$(redis-benchmark -p "$rport" -t get -n 500000 -r 1000000 -c 50 --csv | grep '^"GET"')
      emit "{\"size\":$N,\"what\":\"redis_benchmark_get_$i\",\"r\":{\"keys\":$keys,\"csv\":\"$(echo "$rb" | tr -d '"')\"}}"
      if [ $((i % 2)) = 1 ]; then
        wrk_round wrk_passthrough "$pport" "$gate" "$PT_PID" "$i"
        wrk_round wrk_gate "$PORT" "$gate" "$SERVER_PID" "$i"
      else
        wrk_round wrk_gate "$PORT" "$gate" "$SERVER_PID" "$i"
        wrk_round wrk_passthrough "$pport" "$gate" "$PT_PID" "$i"
      fi
    done
    kill "$PT_PID" 2>/dev/null || true
    wait "$PT_PID" 2>/dev/null || true
    timed_load "$WORK/gate.json" --mode gate --target "http://127.0.0.1:$PORT" --token "$gate" --ids "$city/ids.txt" \
      --flat-out --concurrency 64 --duration "$GATE_SECONDS"
    emit "{\"size\":$N,\"what\":\"rollcall_load_gate\",\"r\":$(cat "$WORK/gate.json"),\"server_cpu_s\":$SRV_CPU,\"load_cpu_s\":$GEN_CPU}"
    # Paced: at the target's 20,000/s, and at a rate this shared machine sustains.
    for rate in 20000 ${GATE_RATE:-5000}; do
      timed_load "$WORK/gate.json" --mode gate --target "http://127.0.0.1:$PORT" --token "$gate" --ids "$city/ids.txt" \
        --rate "$rate" --concurrency 64 --duration "$GATE_SECONDS"
      emit "{\"size\":$N,\"what\":\"rollcall_load_gate_$rate\",\"r\":$(cat "$WORK/gate.json"),\"server_cpu_s\":$SRV_CPU,\"load_cpu_s\":$GEN_CPU}"
    done
    stop_server
    kill "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
  fi
done

if [ -n "${CLOSE_BENCH:-}" ]; then
  echo "-- the engine's close of a 10 M round (criterion)"
  (cd "$root" && cargo bench --locked --bench engine -- --warm-up-time 1 --measurement-time 5 'close_and_coverage_10M|close_10M_round')
  for b in close_and_coverage_10M close_10M_round_95pct_sampled; do
    est=$root/target/criterion/engine/$b/new/estimates.json
    [ -f "$est" ] && emit "{\"size\":10000000,\"what\":\"criterion_$b\",\"r\":{\"mean_s\":$(python3 -c "import json;print(json.load(open('$est'))['mean']['point_estimate']/1e9)")}}"
  done
fi

cp "$raw" "$here/results.jsonl"
python3 "$here/report.py" "$raw" >"$here/results.md"
echo "wrote $here/results.md"
# The summary: every ratio of issue 18's Done-when.
sed -n '/^## Summary/,/^## Round close/p' "$here/results.md" | sed '$d'
