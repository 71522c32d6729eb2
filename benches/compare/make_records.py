#!/usr/bin/env python3
"""Writes records.csv for a generated city: one sample record for each
resident that FNV-1a(person_id) % 1_000_000 < fraction * 1_000_000 selects,
in pooled tubes of 10, collected inside the bench round's window.

The same rule picks the same people in `rollcall load --fraction`, so
rollcall, DuckDB and PostgreSQL all see the same sampled set and must find
the same missing count.

usage: make_records.py REGISTER_CSV OUT_CSV [--fraction 0.95]
"""
import argparse
import sys

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1

# The bench round's window (any fixed window will do for the SQL engines;
# rollcall's own records come from `rollcall load` with real times).
OPENS = "2026-04-19 06:00:00+08"
DEADLINE = "2026-04-19 18:00:00+08"


def fnv1a64(b: bytes) -> int:
    h = FNV_OFFSET
    for c in b:
        h = ((h ^ c) * FNV_PRIME) & MASK
    return h


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("register")
    ap.add_argument("out")
    ap.add_argument("--fraction", type=float, default=0.95)
    a = ap.parse_args()
    limit = round(a.fraction * 1_000_000)
    n = 0
    with open(a.register, "rb") as f, open(a.out, "w", buffering=1 << 20) as out:
        out.write("person_id,tube_id,collected_at\n")
        next(f)  # header
        for line in f:
            pid = line[:18]
            if fnv1a64(pid) % 1_000_000 >= limit:
                continue
            # Times spread over the window by position, minute resolution.
            minute = (n * 7) % 720
            out.write(
                f"{pid.decode()},B{n // 10:08d},2026-04-19 {6 + minute // 60:02d}:{minute % 60:02d}:00+08\n"
            )
            n += 1
    print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
