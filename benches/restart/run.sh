#!/usr/bin/env bash
# Restart time: exec of `rollcall serve` on an existing data directory to
# `/readyz` = 200 (the replay), and to the log line saying the store passed
# its integrity check (from then on writes commit), with an anchor measured
# in the same round: one SQLite pass over every register row and record of
# the same file (Python's sqlite3, an aggregate reading every column the
# replay reads). Several binaries are run in turn within each round, so
# builds compare on the same machine state.
#
# usage: benches/restart/run.sh DATA_DIR [ROUNDS] [BIN...]
#   DATA_DIR  e.g. the data-10000000 that `benches/compare/run.sh 10000000`
#             leaves in its WORK directory (10 M residents, 9.5 M records)
#   ROUNDS    default 3
#   BIN       default target/release/rollcall
# Needs: python3, curl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=${1:?usage: run.sh DATA_DIR [ROUNDS] [BIN...]}
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$root/target/release/rollcall")
db=$data/rollcall.sqlite3
[ -f "$db" ] || { echo "no store in $data" >&2; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

anchor() {
  python3 - "$db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
t = time.time()
c.execute("SELECT count(*), sum(length(name) + length(phone) + length(area) + length(household)"
          " + person_id % 7 + at % 7 + seq % 7) FROM register_rows").fetchone()
c.execute("SELECT count(*), sum(length(tube_id) + length(site) + person_id % 7"
          " + collected_at % 7 + arrived_at % 7 + seq % 7) FROM records").fetchone()
# Schema 3 on: a row per batch of records, packed (every byte of the body read).
if c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'record_batches'").fetchone()[0]:
    c.execute("SELECT count(*), sum(length(body) + count + arrived_at % 7 + seq % 7)"
              " FROM record_batches").fetchone()
print(f"{time.time() - t:.2f}")
PY
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }

echo "| round | anchor: SQLite pass | binary | ready | checked | ready / anchor |"
echo "|---:|---:|---|---:|---:|---:|"
for r in $(seq 1 "$rounds"); do
  a=$(anchor)
  for bin in "${bins[@]}"; do
    port=$(free_port)
    t0=$(now)
    ROLLCALL_ADMIN_TOKEN=restart-bench-admin-token-0123456789abcdef \
      "$bin" serve --data "$data" --listen "127.0.0.1:$port" >"$log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
      kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
      sleep 0.02
    done
    t1=$(now)
    # Builds that check before they answer log no "store checked": for
    # them checked = ready.
    t2=$t1
    if grep -q "quick_check_pending" "$log"; then
      until grep -q "store checked" "$log"; do
        kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
        sleep 0.02
      done
      t2=$(now)
    fi
    kill $pid; wait $pid 2>/dev/null || true
    python3 -c "
ready = $t1 - $t0; checked = $t2 - $t0
print(f'| $r | {$a:.2f} s | \`$bin\` | {ready:.2f} s | {checked:.2f} s | {ready / $a:.2f} |')"
  done
done
