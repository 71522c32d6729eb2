#!/usr/bin/env python3
"""Durable ingest into PostgreSQL, the anchors for rollcall's HTTP ingest:
`COPY` of 500 rows per commit, and multi-row `INSERT ... ON CONFLICT DO
NOTHING` of 500 rows per statement (each its own transaction), from one or
more psql sessions at once. The table has the key rollcall deduplicates on,
(tube_id, person_id); synchronous_commit and fsync are left on, so every
commit waits for the disk like rollcall's answers do. Prints one JSON object.

usage: pg_ingest.py REGISTER_CSV [--rows 500000] [--streams 1,4] [--db rollcall_bench]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BATCH = 500


def people(register, n):
    out = []
    with open(register) as f:
        next(f)
        for line in f:
            out.append(line[:18])
            if len(out) == n:
                break
    return out


def rows(ids, n, tag):
    # Fresh pooled tubes of 10; times inside one morning.
    return [
        (ids[i % len(ids)], f"P{tag}{i // 10:09d}", f"2026-04-19 {6 + (i % 720) // 60:02d}:{i % 60:02d}:00+08")
        for i in range(n)
    ]


def copy_script(rs):
    parts = []
    for i in range(0, len(rs), BATCH):
        parts.append("BEGIN;\nCOPY ingest FROM STDIN (FORMAT csv);\n")
        parts.extend(f"{p},{t},{c}\n" for p, t, c in rs[i:i + BATCH])
        parts.append("\\.\nCOMMIT;\n")
    return "".join(parts)


def insert_script(rs):
    parts = []
    for i in range(0, len(rs), BATCH):
        values = ",".join(f"('{p}','{t}','{c}')" for p, t, c in rs[i:i + BATCH])
        parts.append(f"INSERT INTO ingest VALUES {values} ON CONFLICT (tube_id, person_id) DO NOTHING;\n")
    return "".join(parts)


def psql(db, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db], input=sql, text=True, check=True)


def run(db, kind, rs, streams, tmp):
    psql(db, "DROP TABLE IF EXISTS ingest; CREATE TABLE ingest (person_id text, tube_id text, "
             "collected_at timestamptz, PRIMARY KEY (tube_id, person_id)); CHECKPOINT;")
    per = (len(rs) + streams - 1) // streams
    files = []
    for s in range(streams):
        chunk = rs[s * per:(s + 1) * per]
        path = os.path.join(tmp, f"{kind}-{s}.sql")
        with open(path, "w") as f:
            f.write(copy_script(chunk) if kind == "copy" else insert_script(chunk))
        files.append(path)
    t = time.perf_counter()
    procs = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", p],
                              stdout=subprocess.DEVNULL) for p in files]
    for p in procs:
        assert p.wait() == 0, f"psql failed on {kind}"
    secs = time.perf_counter() - t
    n = int(subprocess.run(["psql", "-X", "-At", "-d", db, "-c", "SELECT count(*) FROM ingest"],
                           capture_output=True, text=True, check=True).stdout)
    assert n == len(rs), (n, len(rs))
    return {"kind": kind, "streams": streams, "rows": n, "seconds": round(secs, 3), "rows_per_s": round(n / secs)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("register")
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--streams", default="1,4")
    ap.add_argument("--db", default="rollcall_bench")
    a = ap.parse_args()
    subprocess.run(["createdb", a.db], stderr=subprocess.DEVNULL)
    ids = people(a.register, 1_000_000)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for streams in [int(s) for s in a.streams.split(",")]:
            for kind in ("copy", "insert"):
                rs = rows(ids, a.rows, f"{kind[0]}{streams}")
                results.append(run(a.db, kind, rs, streams, tmp))
    psql(a.db, "DROP TABLE IF EXISTS ingest;")
    version = subprocess.run(["psql", "-X", "-At", "-d", a.db, "-c", "SHOW server_version"],
                             capture_output=True, text=True, check=True).stdout.strip()
    print(json.dumps({"engine": "postgresql " + version, "batch": BATCH, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
