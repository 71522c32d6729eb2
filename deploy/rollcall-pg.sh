#!/usr/bin/env bash
# Runs rollcall with its log in PostgreSQL instead of the data directory, for
# tools that only know `--data DIR` (the conformance suite):
#
#   ROLLCALL_REAL_BIN=target/release/rollcall \
#     python3 ../shared/conformance/run.py --bin deploy/rollcall-pg.sh
#
# Each data directory gets a database of its own (named after its path, so a
# restart on the same directory finds the same log), on ROLLCALL_PG_BASE
# (default postgres://root@127.0.0.1:5432). `--data` is still passed through;
# `--store` wins over it.
set -euo pipefail
bin="${ROLLCALL_REAL_BIN:?set ROLLCALL_REAL_BIN to the rollcall binary}"
base="${ROLLCALL_PG_BASE:-postgres://root@127.0.0.1:5432}"
if [ "${1:-}" = serve ]; then
  data="${ROLLCALL_DATA:-./rollcall-data}"
  args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = --data ] && [ $((i + 1)) -lt ${#args[@]} ]; then
      data="${args[$((i + 1))]}"
    fi
  done
  db="rollcall_conf_$(realpath -m "$data" | sha1sum | cut -c1-16)"
  if ! psql "$base/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql "$base/postgres" -qc "CREATE DATABASE $db"
  fi
  export ROLLCALL_STORE="$base/$db"
fi
exec "$bin" "$@"
