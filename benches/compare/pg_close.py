#!/usr/bin/env python3
"""The round close in PostgreSQL through psql: load register.csv and
records.csv with \\copy into a fresh database (timed, with the index and
ANALYZE a real deployment would have), then the NOT EXISTS anti-join that
finds the missing set and the coverage of every area node (each timed,
median of --repeat runs). Prints one JSON object.

usage: pg_close.py REGISTER_CSV RECORDS_CSV [--db rollcall_bench] [--repeat 3]
Connection: the usual PG* environment (default: local socket, current user).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

OPENS = "2026-04-19 06:00:00+08"
DEADLINE = "2026-04-19 18:00:00+08"

SETUP = """
DROP TABLE IF EXISTS residents, records, missing, coverage;
CREATE TABLE residents (person_id text PRIMARY KEY, name text, phone text, area text, household text);
CREATE TABLE records (person_id text, tube_id text, collected_at timestamptz, PRIMARY KEY (tube_id, person_id));
"""

ANTI_JOIN = f"""
SET work_mem = '1GB';
DROP TABLE IF EXISTS missing;
CREATE TEMP TABLE missing AS
SELECT r.person_id, r.area FROM residents r
WHERE NOT EXISTS (SELECT 1 FROM records s
                  WHERE s.person_id = r.person_id
                    AND s.collected_at BETWEEN '{OPENS}' AND '{DEADLINE}');
"""

COVERAGE = """
SET work_mem = '1GB';
DROP TABLE IF EXISTS coverage;
CREATE TEMP TABLE coverage AS
WITH leaf AS (
  SELECT r.area, count(*) AS in_scope, count(m.person_id) AS missing
  FROM residents r LEFT JOIN missing m ON m.person_id = r.person_id
  GROUP BY r.area
), nodes AS (
  SELECT array_to_string((string_to_array(area, '/'))[1:k], '/') AS node, in_scope, missing
  FROM leaf, generate_series(1, cardinality(string_to_array(area, '/'))) AS k
)
SELECT node, sum(in_scope) AS in_scope, sum(missing) AS missing FROM nodes GROUP BY node;
"""


def psql(db, sql):
    r = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", db],
        input=sql, text=True, check=True, capture_output=True,
    )
    return r.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("register")
    ap.add_argument("records")
    ap.add_argument("--db", default="rollcall_bench")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["dropdb", "--if-exists", a.db], check=True)
    subprocess.run(["createdb", a.db], check=True)
    psql(a.db, SETUP)
    t = time.perf_counter()
    psql(a.db, f"\\copy residents FROM '{a.register}' CSV HEADER\n")
    psql(a.db, f"\\copy records FROM '{a.records}' CSV HEADER\n")
    psql(a.db, "CREATE INDEX ON records (person_id, collected_at); ANALYZE residents; ANALYZE records;")
    load_s = time.perf_counter() - t
    anti, cov = [], []
    for _ in range(a.repeat):
        # Temp tables live per session: both steps run in one psql, timed apart
        # by psql's own \timing.
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", a.db],
            input="\\timing on\n" + ANTI_JOIN + "\\echo MARK\n" + COVERAGE
            + "SELECT 'RESULT', (SELECT count(*) FROM missing), (SELECT count(*) FROM coverage),"
              " (SELECT sum(missing) FROM coverage WHERE node NOT LIKE '%/%');\n",
            text=True, check=True, capture_output=True,
        ).stdout
        before, after = out.split("MARK")
        # The CREATE TABLE AS statement is the last timed one in each part.
        last = lambda s: [float(l.split()[1]) for l in s.splitlines() if l.startswith("Time:")][-1]
        anti.append(last(before) / 1000)
        cov_lines = after.split("RESULT")[0]
        cov.append(last(cov_lines) / 1000)
        res = [l for l in after.splitlines() if "RESULT" in l][0].split("|")
        missing, nodes, top_missing = int(res[1]), int(res[2]), int(res[3])
        assert missing == top_missing, "coverage must add up to the missing set"
    residents = int(psql(a.db, "SELECT count(*) FROM residents"))
    records = int(psql(a.db, "SELECT count(*) FROM records"))
    version = psql(a.db, "SHOW server_version")
    print(json.dumps({
        "engine": "postgresql " + version,
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
