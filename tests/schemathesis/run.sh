#!/usr/bin/env bash
# schemathesis against the served OpenAPI document, with every check, as an
# admin, as a scanner and with no token (docs/schemathesis.md):
#
#   bash tests/schemathesis/run.sh target/release/rollcall
#
# Loads the fixture city into a fresh data directory with `rollcall import`,
# starts `rollcall serve` on a free port (in-process status cache) with a
# random admin token, issues a scanner token and a second admin token for
# the run (so the bootstrap admin that set things up is never the one
# schemathesis revokes), then runs `schemathesis run …/openapi.json --checks
# all` once per token. Reports (JUnit XML, NDJSON events) go to
# $OUT (default tests/schemathesis/out/<role>/); the summary of each run is
# printed. Always stops the server it started.
#
# Bounded: MAX_EXAMPLES per operation (default 30) and MAX_TIME seconds per
# run (default 300). SEED fixes the generated data (default 14).
# Needs: schemathesis 4 on PATH (`pip install schemathesis`, or SCHEMATHESIS
# pointing at the binary), curl, python3.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:?usage: tests/schemathesis/run.sh path/to/rollcall}"
[ -x "$bin" ] || { echo "run.sh: $bin is not an executable" >&2; exit 2; }
st="${SCHEMATHESIS:-schemathesis}"
command -v "$st" >/dev/null 2>&1 || { echo "run.sh: schemathesis not found (pip install schemathesis)" >&2; exit 2; }
fixture="${ROLLCALL_FIXTURE:-$repo/fixtures/chongwen}"
out="$(mkdir -p "${OUT:-$here/out}" && cd "${OUT:-$here/out}" && pwd)"
max_examples="${MAX_EXAMPLES:-30}"
max_time="${MAX_TIME:-300}"
seed="${SEED:-14}"
roles="${ROLES:-admin scanner none}"

work="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-st.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

data="$work/data"
mkdir -p "$data"
echo "== rollcall import (fixture city $fixture)"
"$bin" import register "$fixture/register.csv" --data "$data" >/dev/null || exit 1
"$bin" import heads "$fixture/heads.csv" --data "$data" >/dev/null || exit 1

port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
boot="$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')"
ROLLCALL_ADMIN_TOKEN="$boot" "$bin" serve --data "$data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for i in $(seq 600); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { echo "run.sh: the server exited" >&2; cat "$work/server.log" >&2; exit 1; }
  [ "$i" -lt 600 ] || { echo "run.sh: not ready after 60 s" >&2; exit 1; }
  sleep 0.1
done
echo "== rollcall serve on $base"

token() { # JSON body -> token
  curl -fsS -H "Authorization: Bearer $boot" -H 'Content-Type: application/json' \
    -d "$1" "$base/v1/tokens" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])'
}
# Filler tokens first, so the run's own tokens have ids schemathesis is
# unlikely to guess for DELETE /v1/tokens/{id} (small numbers come first).
for i in $(seq 40); do token "{\"role\":\"gate\",\"name\":\"filler $i\"}" >/dev/null || exit 1; done
admin="$(token '{"role":"admin","name":"schemathesis admin"}')" || exit 1
scanner="$(token '{"role":"scanner","name":"schemathesis scanner","site":"S01"}')" || exit 1

status=0
for role in $roles; do
  case "$role" in
    admin) auth=(-H "Authorization: Bearer $admin") ;;
    scanner) auth=(-H "Authorization: Bearer $scanner") ;;
    none) auth=() ;;
    *) echo "run.sh: unknown role $role" >&2; exit 2 ;;
  esac
  dir="$out/$role"
  mkdir -p "$dir"
  echo "== schemathesis as $role (checks all, max-examples $max_examples, max-time ${max_time}s, seed $seed)"
  # From the scratch directory: schemathesis keeps a cache in ./.schemathesis.
  (cd "$work" && "$st" run "$base/openapi.json" --checks all "${auth[@]}" \
    --max-examples "$max_examples" --max-time "$max_time" --seed "$seed" \
    --request-timeout 30 --workers 2 --no-color \
    --report junit,ndjson --report-dir "$dir" \
    >"$dir/output.txt" 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || status=1
  # The summary: everything from the failures section on.
  sed -n '/^=* *FAILURES\|^=* *SUMMARY/,$p' "$dir/output.txt" | tail -n 60
  echo "-- exit $rc (full output: $dir/output.txt)"
done
if grep -q "panicked" "$work/server.log"; then
  echo "run.sh: the server panicked:" >&2
  grep -A5 "panicked" "$work/server.log" >&2
  status=1
fi
exit "$status"
