#!/usr/bin/env bash
# Runs rollcall with its log in PostgreSQL instead of the data directory, for
# tools that only know `--data DIR` (the conformance suite):
#
#   python3 ../shared/conformance/run.py --bin deploy/rollcall-pg.sh
#
# (it runs target/release/rollcall beside it, or ROLLCALL_REAL_BIN).
#
# Each data directory gets a database of its own (named after its path, so a
# restart on the same directory finds the same log), on ROLLCALL_PG_BASE
# (default postgres://root@127.0.0.1:5432). `--data` is still passed through;
# `--store` wins over it.
set -euo pipefail
# The suite passes only its own environment: default to this repository's build.
bin="${ROLLCALL_REAL_BIN:-$(dirname "$(realpath "$0")")/../target/release/rollcall}"
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
