#!/usr/bin/env python3
"""The round close in DuckDB: load register.csv and records.csv into tables
in memory (timed), then the explicit anti-join that finds the missing set,
and the coverage of every area node (each timed, median of --repeat runs).
Prints one JSON object.

usage: duckdb_close.py REGISTER_CSV RECORDS_CSV [--repeat 3] [--threads 2]
"""
import argparse
import json
import statistics
import sys
import time

import duckdb

OPENS = "2026-04-19 06:00:00+08"
DEADLINE = "2026-04-19 18:00:00+08"

ANTI_JOIN = f"""
CREATE OR REPLACE TEMP TABLE missing AS
SELECT r.person_id, r.area
FROM residents r
ANTI JOIN (SELECT person_id FROM records
           WHERE collected_at BETWEEN TIMESTAMPTZ '{OPENS}' AND TIMESTAMPTZ '{DEADLINE}') s
  ON s.person_id = r.person_id
"""

# Coverage of every node: counts per leaf area, then summed into each of its
# prefixes (subdistrict, community, grid, block, unit).
COVERAGE = """
CREATE OR REPLACE TEMP TABLE coverage AS
WITH leaf AS (
  SELECT r.area, count(*) AS in_scope, count(m.person_id) AS missing
  FROM residents r LEFT JOIN missing m ON m.person_id = r.person_id
  GROUP BY r.area
), nodes AS (
  SELECT array_to_string(list_slice(string_split(area, '/'), 1, k), '/') AS node, in_scope, missing
  FROM leaf, LATERAL (SELECT unnest(range(1, len(string_split(area, '/')) + 1)) AS k)
)
SELECT node, sum(in_scope) AS in_scope, sum(missing) AS missing FROM nodes GROUP BY node
"""


def timed(con, sql):
    t = time.perf_counter()
    con.execute(sql)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("register")
    ap.add_argument("records")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {a.threads}")
    t = time.perf_counter()
    con.execute(
        f"""CREATE TABLE residents AS SELECT * FROM read_csv('{a.register}', header = true,
            columns = {{'person_id': 'VARCHAR', 'name': 'VARCHAR', 'phone': 'VARCHAR',
                        'area': 'VARCHAR', 'household': 'VARCHAR'}})"""
    )
    con.execute(
        f"""CREATE TABLE records AS SELECT * FROM read_csv('{a.records}', header = true,
            columns = {{'person_id': 'VARCHAR', 'tube_id': 'VARCHAR', 'collected_at': 'TIMESTAMPTZ'}})"""
    )
    load_s = time.perf_counter() - t
    anti, cov = [], []
    for _ in range(a.repeat):
        anti.append(timed(con, ANTI_JOIN))
        cov.append(timed(con, COVERAGE))
    residents = con.execute("SELECT count(*) FROM residents").fetchone()[0]
    records = con.execute("SELECT count(*) FROM records").fetchone()[0]
    missing = con.execute("SELECT count(*) FROM missing").fetchone()[0]
    nodes = con.execute("SELECT count(*) FROM coverage").fetchone()[0]
    top = con.execute("SELECT missing FROM coverage WHERE node NOT LIKE '%/%' ORDER BY node").fetchall()
    assert sum(m for (m,) in top) == missing, "coverage must add up to the missing set"
    print(json.dumps({
        "engine": "duckdb " + duckdb.__version__,
        "threads": a.threads,
        "residents": residents,
        "records": records,
        "missing": missing,
        "nodes": nodes,
        "load_s": round(load_s, 3),
        "antijoin_s": round(statistics.median(anti), 3),
        "coverage_s": round(statistics.median(cov), 3),
        "close_s": round(statistics.median(x + y for x, y in zip(anti, cov)), 3),
        "runs": {"antijoin_s": [round(x, 3) for x in anti], "coverage_s": [round(x, 3) for x in cov]},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
