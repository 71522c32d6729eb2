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
from statistics import mean, median


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


def rounds(d, what):
    """The records of one kind, round by round in numeric order (`wrk_gate_1`,
    `wrk_gate_2`, …), or the single unnumbered one older runs wrote."""
    keyed = [(int(k.rsplit("_", 1)[1]), k) for k in d
             if k.startswith(what + "_") and k.rsplit("_", 1)[1].isdigit()]
    if keyed:
        return [d[k] for _, k in sorted(keyed)]
    return [d[what]] if what in d else []


def gate_rounds(d, what):
    """The wrk lines of one kind, round by round."""
    return [wrk_line(r["line"]) for r in rounds(d, what)]


def redis_benchmark_rounds(d):
    """`redis-benchmark -t get`'s rate in each round: (rps, p99 ms)."""
    out = []
    for r in rounds(d, "redis_benchmark_get"):
        f = r["csv"].split(",")  # GET,rps,avg,min,p50,p95,p99,max
        out.append((float(f[1]), float(f[6])))
    return out


def cpu_per_lookup(d, what):
    """Server CPU µs per lookup in each wrk round that recorded it."""
    out = []
    for r in rounds(d, what):
        if r.get("server_cpu_s") is not None:
            out.append(r["server_cpu_s"] * 1e6 / (wrk_line(r["line"])["requests/s"] * r["seconds"]))
    return out


def pg_rate(pg, kind, streams):
    """PostgreSQL's rows/s for one kind of load from `streams` sessions."""
    for r in pg["results"]:
        if r["kind"] == kind and r["streams"] == streams:
            return r["rows_per_s"]
    return None


def summary(by):
    """Issue 18's Done-when, one ratio a row, each against its anchor from the same run."""
    rows = []
    for size, d in sorted(by.items()):
        ris, pgs = rounds(d, "rollcall_ingest"), rounds(d, "pg_ingest")
        if ris and pgs:
            ri = mean([r["items_per_s"] for r in ris])
            for streams in sorted({r["streams"] for pg in pgs for r in pg["results"]}):
                per = [pg_rate(pg, "copy", streams) for pg in pgs]
                if None in per:
                    continue
                goal = "≥ 1.0× (aim 1.5×)" if streams > 1 else "—"
                each = ""
                if len(ris) == len(per) > 1:
                    each = " (rounds: " + ", ".join(f"{a['items_per_s'] / b:.2f}" for a, b in zip(ris, per)) + ")"
                rows.append((f"durable ingest over HTTP ÷ PostgreSQL `COPY`, {streams} session(s) ({size:,} register; "
                             "mean of rounds)",
                             f"{fmt(ri)}/s ÷ {fmt(mean(per))}/s{each}",
                             f"**{ri / mean(per):.2f}×**", goal))
        gates, pts = gate_rounds(d, "wrk_gate"), gate_rounds(d, "wrk_passthrough")
        rbs = redis_benchmark_rounds(d)
        if gates and rbs:
            rps = mean([x for x, _ in rbs])
            g = mean([x["requests/s"] for x in gates])
            per = ""
            if len(rbs) == len(gates) > 1:
                ratios = [a["requests/s"] / b for a, (b, _) in zip(gates, rbs)]
                per = " (rounds: " + ", ".join(f"{x:.2f}" for x in ratios) + f"; median {median(ratios):.2f})"
            rows.append(("gate lookups (wrk -c64, mean of rounds) ÷ raw `redis-benchmark -t get` (mean of rounds)",
                         f"{fmt(g)}/s ÷ {fmt(rps)}/s{per}", f"**{g / rps:.2f}×**", "≥ 0.8×"))
            if pts:
                per = [a["requests/s"] / b["requests/s"] for a, b in zip(gates, pts)]
                p = mean([x["requests/s"] for x in pts])
                rows.append(("gate lookups ÷ the actix-web + Redis pass-through (same wrk script, rounds alternated)",
                             f"{fmt(g)}/s ÷ {fmt(p)}/s (rounds: {', '.join(f'{x:.2f}' for x in per)}; "
                             f"median {median(per):.2f})",
                             f"**{g / p:.2f}×**", "≥ 0.95×"))
                rows.append(("the pass-through itself ÷ raw `redis-benchmark -t get`", f"{fmt(p)}/s ÷ {fmt(rps)}/s",
                             f"{p / rps:.2f}×", "(the ceiling)"))
                gc, pc = cpu_per_lookup(d, "wrk_gate"), cpu_per_lookup(d, "wrk_passthrough")
                if gc and pc:
                    rows.append(("server CPU per lookup under wrk: rollcall ÷ the pass-through (mean of rounds)",
                                 f"{mean(gc):.1f} µs ÷ {mean(pc):.1f} µs", f"{mean(gc) / mean(pc):.2f}×", "—"))
            worst = max(x["p99.9"] for x in gates)
            rows.append(("gate p99.9 under wrk -c64 (worst round)", ", ".join(f"{x['p99.9']:.1f} ms" for x in gates),
                         f"**{worst:.1f} ms**", "≤ 10 ms"))
            own = [r["server"] for r in rounds(d, "wrk_gate") if "server" in r]
            if own:
                # The server's own histogram: a bad round with none over 10 ms
                # inside the server lost its time outside the handler.
                rows.append(("rollcall's lookups over 10 ms inside the server / answered from the engine as "
                             "Redis was slow, by round",
                             ", ".join(f"{o['over_10ms']}/{o['hedged']}" for o in own),
                             f"{sum(o['over_10ms'] for o in own)}/{sum(o['hedged'] for o in own)}", "—"))
            if pts:
                # The same client and machine against the 30-line server:
                # what of the tail is theirs.
                rows.append(("the pass-through's p99.9 in the same rounds", ", ".join(f"{x['p99.9']:.1f} ms" for x in pts),
                             f"{max(x['p99.9'] for x in pts):.1f} ms", "(the ceiling)"))
    base = by.get(0, {}).get("rollcall_empty", {}).get("rss_mb")
    for size, d in sorted(by.items()):
        rc = d.get("rollcall_close")
        if rc and base is not None and size >= 10_000_000:
            per_res = (rc["rss_register_mb"] - base) * 1048576 / size
            rows.append((f"memory per resident at {size:,} (RSS with the register − empty server)",
                         f"{fmt(rc['rss_register_mb'], ' MB')} − {fmt(base, ' MB')}", f"**{per_res:.0f} B**", "≤ 100 B"))
            rows.append((f"round close at {size:,} over HTTP (compute + durable close + flips to the cache)",
                         f"{rc['flipped']:,} flips", f"{rc['close_http_s']:.2f} s", "—"))
    for key, name in (("criterion_close_and_coverage_10M", "close + coverage of every node"),
                      ("criterion_close_10M_round_95pct_sampled", "close alone")):
        c = by.get(10_000_000, {}).get(key)
        if c:
            rows.append((f"{name} of a 10 M round, compute (criterion, `cargo bench --bench engine`)", "mean",
                         f"**{c['mean_s'] * 1000:.1f} ms**", "< 100 ms" if "coverage" in key else "—"))
    print("## Summary: issue 18's Done-when\n")
    if not rows:
        print("Nothing of the Done-when was measured in this run.\n")
        return
    print("| what | measured | ratio / figure | target |")
    print("|---|---|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


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

    summary(by)

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
        ris, pgs = rounds(d, "rollcall_ingest"), rounds(d, "pg_ingest")
        if not ris or not pgs:
            continue
        print(f"## Durable ingest, batches of 500 ({size:,}-resident register)\n")
        print("| round | what | rows/s | rollcall (same round) ÷ this |")
        print("|---:|---|---:|---:|")
        for i, (ri, pg) in enumerate(zip(ris, pgs), 1):
            print(f"| {i} | rollcall `POST /v1/records` over HTTP, {ri['concurrency']} connections, flat out "
                  f"(p50 {ri['latency']['p50_ms']:.1f} ms, p99 {ri['latency']['p99_ms']:.1f} ms per batch) | "
                  f"**{fmt(ri['items_per_s'])}** | 1.0 |")
            for r in pg["results"]:
                what = "`COPY`, 500 rows per commit" if r["kind"] == "copy" else "`INSERT … ON CONFLICT DO NOTHING`, 500 rows per statement"
                print(f"| {i} | PostgreSQL {what}, {r['streams']} session(s) | {fmt(r['rows_per_s'])} | "
                      f"{ri['items_per_s'] / r['rows_per_s']:.2f}× |")
        print()
        cpu = [f"round {i}: the server {ri['server_cpu_s'] * 1e6 / max(ri['items'], 1):.2f} µs per record, "
               f"the load generator {ri['load_cpu_s'] * 1e6 / max(ri['items'], 1):.2f} µs"
               for i, ri in enumerate(ris, 1) if ri.get("server_cpu_s") is not None]
        if cpu:
            print("CPU (user + system, from /proc): " + "; ".join(cpu) + ".\n")

    for size, d in sorted(by.items()):
        rbs = redis_benchmark_rounds(d)
        if not rbs:
            continue
        keys = rounds(d, "redis_benchmark_get")[0]["keys"]
        rps = mean([x for x, _ in rbs])
        print(f"## Gate lookups ({size:,} residents, {keys:,} keys in Redis)\n")
        print("| what | lookups/s | p99 | ÷ raw Redis GET (mean of rounds) |")
        print("|---|---:|---:|---:|")
        for i, (x, p99) in enumerate(rbs, 1):
            print(f"| round {i}: raw `redis-benchmark -t get`, 50 clients, no pipelining | {fmt(x)} | {p99:.2f} ms | "
                  f"{x / rps:.2f} |")
        for i, x in enumerate(gate_rounds(d, "wrk_passthrough"), 1):
            print(f"| round {i}: the pass-through (`benches/passthrough`, one Redis GET), wrk -t2 -c64 | "
                  f"{fmt(x['requests/s'])} | {x['p99']:.2f} ms (p99.9 {x['p99.9']:.2f} ms) | {x['requests/s'] / rps:.2f}× |")
        for i, x in enumerate(gate_rounds(d, "wrk_gate"), 1):
            print(f"| round {i}: rollcall `GET /v1/status/{{id}}` over HTTP from Redis, wrk -t2 -c64 | {fmt(x['requests/s'])} | "
                  f"{x['p99']:.2f} ms (p99.9 {x['p99.9']:.2f} ms) | **{x['requests/s'] / rps:.2f}×** |")
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
        for what, name in (("wrk_gate", "rollcall"), ("wrk_passthrough", "the pass-through")):
            if xs := cpu_per_lookup(d, what):
                cpu.append(f"{name}'s server CPU per lookup under wrk, round by round: "
                           + ", ".join(f"{x:.1f} µs" for x in xs))
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
