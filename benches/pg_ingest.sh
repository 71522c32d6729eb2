#!/usr/bin/env bash
# Several servers: durable ingest over HTTP with the log in PostgreSQL,
# against the embedded SQLite store and against raw PostgreSQL `COPY` of the
# same rows, in one run (the machine is noisy: compare ratios within a run);
# then gate lookups on a standby.
#
#   bash benches/pg_ingest.sh [target/release/rollcall] [seconds]
#
# Needs PostgreSQL on 127.0.0.1:5432 (user root, trust), as .ci/run sets up.
set -euo pipefail
bin=$(realpath "${1:-target/release/rollcall}")
secs=${2:-15}
pg=${ROLLCALL_PG_BASE:-postgres://root@127.0.0.1:5432}
work=$(mktemp -d /tmp/rollcall-pgbench-XXXXXX)
db="rollcall_bench_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export ROLLCALL_ADMIN_TOKEN="bench-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
load() { # target, extra args…
  local target=$1; shift
  "$bin" load --target "$target" --token "$ROLLCALL_ADMIN_TOKEN" --site S01 --residents 200000 --json "$@"
}
serve() { # port, store (a PostgreSQL server's scratch directory: its own)
  RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$1" --store "$2" --data "$work/data-$1" --advertise "http://127.0.0.1:$1" >>"$work/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.05; done
  echo "server on $1 did not start"; exit 1
}
rate() { python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(j.get("'"$1"'"))'; }

echo "== SQLite store: ingest flat out, batches of 500, 4 in flight, ${secs} s"
p=$(free_port); serve "$p" "sqlite:$work/sqlite"
load "http://127.0.0.1:$p" --mode ingest --flat-out --batch 500 --concurrency 4 --duration "$secs" | tee "$work/sqlite.json"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== PostgreSQL store (leader alone): the same"
psql "$pg/postgres" -qc "CREATE DATABASE $db"
p=$(free_port); serve "$p" "$pg/$db"
load "http://127.0.0.1:$p" --mode ingest --flat-out --batch 500 --concurrency 4 --duration "$secs" | tee "$work/pg.json"
rows=$(psql "$pg/$db" -Atc "SELECT count(*) FROM events")
echo "events rows: $rows"

echo "== raw PostgreSQL COPY of 2,000,000 record rows (the SQLite store's row shape), one transaction"
python3 - "$work/rows.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(2_000_000):
        f.write(f"{i // 500 + 1},{610802198001010000 + i},T{i // 10:09d},S01,1650340800000,1650340900000\n")
PY
psql "$pg/$db" -qc "CREATE TABLE raw_records (seq bigint, person_id bigint, tube_id text, site text, collected_at bigint, arrived_at bigint)"
t0=$(date +%s.%N)
psql "$pg/$db" -qc "\\copy raw_records FROM '$work/rows.csv' WITH (FORMAT csv)"
t1=$(date +%s.%N)
python3 -c "print(f'COPY: {2_000_000 / ($t1 - $t0):,.0f} rows/s ({$t1 - $t0:.2f} s)')"

echo "== a standby beside the leader: its lag while the leader ingests, then gate lookups on it"
ps=$(free_port); serve "$ps" "$pg/$db"
( for _ in $(seq 1 $((secs * 10))); do curl -s "http://127.0.0.1:$ps/standby"; echo; sleep 0.1; done ) >"$work/lag.txt" &
lagpid=$!
load "http://127.0.0.1:$p" --mode ingest --flat-out --batch 500 --concurrency 4 --duration "$secs" >"$work/pg2.json"
wait "$lagpid"
python3 - "$work/lag.txt" "$work/pg2.json" <<'PY'
import json, sys
lags = sorted(json.loads(l)["lag_ms"] for l in open(sys.argv[1]) if l.strip() and json.loads(l).get("lag_ms") is not None)
j = json.load(open(sys.argv[2]))
print(f"leader ingest with a standby following: {j}")
print(f"standby lag_ms: n={len(lags)} p50={lags[len(lags)//2]} p99={lags[min(len(lags)-1, int(len(lags)*0.99))]} max={lags[-1]}")
PY
load "http://127.0.0.1:$ps" --mode gate --flat-out --concurrency 8 --duration "$secs" | tee "$work/gate.json"
