#!/usr/bin/env python3
"""Turns run.sh's results.jsonl into results.md: the measured figures and
their ratios against the anchors measured in the same run.

usage: report.py RESULTS_JSONL > results.md
"""
import json
import platform
import subprocess
import sys
from collections import defaultdict


def fmt(n, unit=""):
    if isinstance(n, float) and n < 100:
        return f"{n:.2f}{unit}"
    return f"{round(n):,}{unit}"


def wrk_line(line):
    # "requests/s 41234  p50 1.20ms  p99 4.10ms  p99.9 9.00ms  errors 0"
    parts = line.split()
    out = {}
    for k, v in zip(parts[0::2], parts[1::2]):
        out[k] = float(v.rstrip("ms"))
    return out


def main() -> int:
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    by = defaultdict(dict)
    for r in rows:
        v = dict(r["r"])
        # Figures measured around a run (CPU seconds) sit beside its report.
        v.update({k: x for k, x in r.items() if k not in ("size", "what", "r")})
        by[r["size"]][r["what"]] = v
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    print("# rollcall vs DuckDB and PostgreSQL (`benches/compare/run.sh`)\n")
    loads = [r["r"]["loadavg"] for r in rows if r["what"] == "machine"]
    print(f"Machine: {cpu} cores, {platform.machine()}, shared and noisy: compare ratios, not absolute figures. ")
    if loads:
        print(f"Load average (1 min) seen at the start of each size: {', '.join(loads)}. ")
    print("Each size's figures, anchors included, come from one run of that size; raw numbers in `results.jsonl` (beside this file).\n")

    print("## Round close (missing set + coverage of every area node)\n")
    print("| residents | engine | load | anti-join (missing set) | coverage of every node | close | rollcall is faster by |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size, d in sorted(by.items()):
        rc = d.get("rollcall_close")
        if not rc:
            continue
        ing = d.get("rollcall_ingest_once", {})
        print(f"| {size:,} | rollcall (`POST /v1/rounds/{{id}}/close` over HTTP, in-process cache) | "
              f"import {fmt(rc['import_s'], ' s')} + records over HTTP {fmt(ing.get('elapsed_s', 0), ' s')} | — | — | "
              f"**{fmt(rc['close_http_s'], ' s')}** | — |")
        for key, name in (("duckdb_close", "DuckDB (explicit anti-join, tables in memory)"),
                          ("pg_close", "PostgreSQL (`NOT EXISTS`, indexed)")):
            e = d.get(key)
            if e:
                print(f"| {size:,} | {name} {e['engine'].split()[1]} | {fmt(e['load_s'], ' s')} | "
                      f"{fmt(e['antijoin_s'], ' s')} | {fmt(e['coverage_s'], ' s')} | {fmt(e['close_s'], ' s')} | "
                      f"{e['close_s'] / rc['close_http_s']:.1f}× (anti-join alone: {e['antijoin_s'] / rc['close_http_s']:.1f}×) |")
        print(f"| | all three found | | {rc['missing']:,} missing | | flipped {rc['flipped']:,} | |")
    print()

    base = by.get(0, {}).get("rollcall_empty", {}).get("rss_mb", 0.0)
    print("## Memory and restart (rollcall)\n")
    print(f"Per resident: (RSS with the register − RSS of an empty server, {base:.1f} MB) ÷ residents. "
          "Per record: the growth from the records ÷ records.\n")
    print("| residents | RSS, register only | per resident | records in window | RSS with records | per record | RSS after close | peak | restart (replay to ready) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, d in sorted(by.items()):
        rc = d.get("rollcall_close")
        if not rc:
            continue
        per_res = (rc["rss_register_mb"] - base) * 1048576 / size
        per_rec = (rc["rss_records_mb"] - rc["rss_register_mb"]) * 1048576 / max(rc["records"], 1)
        print(f"| {size:,} | {fmt(rc['rss_register_mb'], ' MB')} | {per_res:.0f} B | {rc['records']:,} | "
              f"{fmt(rc['rss_records_mb'], ' MB')} | {per_rec:.0f} B | {fmt(rc['rss_close_mb'], ' MB')} | "
              f"{fmt(rc['hwm_mb'], ' MB')} | {fmt(rc['restart_s'], ' s')} |")
    print()

    for size, d in sorted(by.items()):
        ri, pg = d.get("rollcall_ingest"), d.get("pg_ingest")
        if not ri or not pg:
            continue
        print(f"## Durable ingest, batches of 500 ({size:,}-resident register)\n")
        print("| what | rows/s | rollcall ÷ this |")
        print("|---|---:|---:|")
        print(f"| rollcall `POST /v1/records` over HTTP, {ri['concurrency']} connections, flat out "
              f"(p50 {ri['latency']['p50_ms']:.1f} ms, p99 {ri['latency']['p99_ms']:.1f} ms per batch) | "
              f"**{fmt(ri['items_per_s'])}** | 1.0 |")
        for r in pg["results"]:
            what = "`COPY`, 500 rows per commit" if r["kind"] == "copy" else "`INSERT … ON CONFLICT DO NOTHING`, 500 rows per statement"
            print(f"| PostgreSQL {what}, {r['streams']} session(s) | {fmt(r['rows_per_s'])} | "
                  f"{ri['items_per_s'] / r['rows_per_s']:.2f}× |")
        print()
        if ri.get("server_cpu_s") is not None:
            print(f"CPU: the server used {ri['server_cpu_s']:.1f} s of CPU for {ri['items']:,} records "
                  f"({ri['server_cpu_s'] * 1e6 / max(ri['items'], 1):.1f} µs per record) in {ri['elapsed_s']:.0f} s; "
                  f"the load generator {ri['load_cpu_s'] * 1e6 / max(ri['items'], 1):.1f} µs per record.\n")

    for size, d in sorted(by.items()):
        rb = d.get("redis_benchmark_get")
        if not rb:
            continue
        f = rb["csv"].split(",")  # GET,rps,avg,min,p50,p95,p99,max
        rps, p99 = float(f[1]), float(f[6])
        print(f"## Gate lookups ({size:,} residents, {rb['keys']:,} keys in Redis)\n")
        print("| what | lookups/s | p99 | ÷ raw Redis GET |")
        print("|---|---:|---:|---:|")
        print(f"| raw `redis-benchmark -t get`, 50 clients, no pipelining | {fmt(rps)} | {p99:.2f} ms | 1.00 |")
        w = d.get("wrk_gate")
        if w:
            x = wrk_line(w["line"])
            print(f"| rollcall `GET /v1/status/{{id}}` over HTTP from Redis, wrk -t2 -c64 | {fmt(x['requests/s'])} | "
                  f"{x['p99']:.2f} ms | **{x['requests/s'] / rps:.2f}×** |")
        lg = d.get("rollcall_load_gate")
        if lg:
            print(f"| the same through `rollcall load --mode gate`, 64 connections | {fmt(lg['items_per_s'])} | "
                  f"{lg['latency']['p99_ms']:.2f} ms | {lg['items_per_s'] / rps:.2f}× |")
        paced = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in d.items()
                       if k.startswith("rollcall_load_gate_") and k.rsplit("_", 1)[1].isdigit())
        for rate, lg in paced:
            print(f"| the same at a set {rate:,}/s (latency from each request's scheduled start) | "
                  f"{fmt(lg['items_per_s'])} | {lg['latency']['p99_ms']:.2f} ms | — |")
        print()
        cpu = []
        w = d.get("wrk_gate")
        if w and w.get("server_cpu_s") is not None:
            n = wrk_line(w["line"])["requests/s"] * w["seconds"]
            cpu.append(f"server CPU per lookup under wrk: {w['server_cpu_s'] * 1e6 / n:.0f} µs")
        if lg := d.get("rollcall_load_gate"):
            if lg.get("server_cpu_s") is not None:
                cpu.append(f"under `rollcall load`: server {lg['server_cpu_s'] * 1e6 / max(lg['items'], 1):.0f} µs, "
                           f"generator {lg['load_cpu_s'] * 1e6 / max(lg['items'], 1):.0f} µs per lookup")
        if cpu:
            print("CPU: " + "; ".join(cpu) + ".\n")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
