#!/usr/bin/env python3
"""N concurrent GETs of one export while the server's RSS is sampled; then
RSS for `--after` seconds more. Prints one JSON object: statuses, how fast
the 503s came, RSS idle / peak / after (MB). Used by benches/exports/run.sh."""
import argparse, json, threading, time, urllib.request, urllib.error

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--token", required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--n", type=int, default=400)
ap.add_argument("--after", type=float, default=30.0)
a = ap.parse_args()


def rss_mb():
    with open(f"/proc/{a.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


results = []
lock = threading.Lock()
go = threading.Event()


def one():
    go.wait()
    t = time.monotonic()
    req = urllib.request.Request(a.url, headers={"Authorization": f"Bearer {a.token}"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            n = len(r.read())
            code, retry = r.status, None
    except urllib.error.HTTPError as e:
        e.read()
        code, retry, n = e.code, e.headers.get("Retry-After"), 0
    except Exception as e:  # transport errors are reported, not hidden
        code, retry, n = f"transport {type(e).__name__}", None, 0
    with lock:
        results.append((code, time.monotonic() - t, retry, n))


idle = rss_mb()
threads = [threading.Thread(target=one) for _ in range(a.n)]
for th in threads:
    th.start()
peak = idle
t0 = time.monotonic()
go.set()
while any(th.is_alive() for th in threads):
    peak = max(peak, rss_mb())
    time.sleep(0.05)
storm_s = time.monotonic() - t0
end = time.monotonic() + a.after
while time.monotonic() < end:
    peak = max(peak, rss_mb())
    time.sleep(0.5)
after = rss_mb()


def pct(xs, q):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1) if xs else None


codes = {}
for c, _, _, _ in results:
    codes[str(c)] = codes.get(str(c), 0) + 1
shed = [t for c, t, _, _ in results if c == 503]
ok = [t for c, t, _, _ in results if c == 200]
print(json.dumps({
    "requests": a.n, "statuses": codes,
    "shed_retry_after": sorted({r for c, _, r, _ in results if c == 503}),
    "shed_ms_p50": pct(shed, 0.5), "shed_ms_max": pct(shed, 1.0),
    "ok_ms_p50": pct(ok, 0.5), "ok_ms_max": pct(ok, 1.0),
    "bytes_per_ok": max((n for c, _, _, n in results if c == 200), default=0),
    "storm_s": round(storm_s, 2),
    "rss_idle_mb": round(idle, 1), "rss_peak_mb": round(peak, 1),
    "rss_after_mb": round(after, 1), "after_s": a.after,
}))
