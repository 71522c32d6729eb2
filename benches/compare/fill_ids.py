#!/usr/bin/env python3
"""Fills a Redis with one key per ID (the ID itself), each holding the same
value: one of rollcall's cached values, picked at random from the same Redis.
These are the keys benches/passthrough reads, so the ceiling answers the same
bytes rollcall does, from the same Redis, for the same wrk script.

usage: fill_ids.py IDS_FILE REDIS_PORT
"""
import subprocess
import sys


def main() -> int:
    ids_file, port = sys.argv[1], sys.argv[2]
    cli = ["redis-cli", "-p", port]
    key = subprocess.run(cli + ["randomkey"], capture_output=True, check=True).stdout.strip()
    value = subprocess.run(cli + ["--raw", "get", key], capture_output=True, check=True).stdout
    value = value[:-1] if value.endswith(b"\n") else value
    if not value:
        print("fill_ids.py: the Redis holds no value to copy", file=sys.stderr)
        return 1
    out = bytearray()
    with open(ids_file, "rb") as f:
        for line in f:
            i = line.strip()
            if i:
                out += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(i), i, len(value), value)
    subprocess.run(cli + ["--pipe"], input=bytes(out), capture_output=True, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
