#!/usr/bin/env bash
# Several servers, shown end to end: three `rollcall serve` on one PostgreSQL
# database and one Redis, behind HAProxy (deploy/haproxy.cfg's rules, with
# this run's ports). Scanners post through HAProxy with retries; the leader
# is SIGKILLed mid-ingest; a standby takes over; the round due meanwhile
# closes at its deadline; every acknowledged record is on every server.
# Prints the failover time (SIGKILL to the first write acknowledged after
# it) and the standbys' lag under ingest.
#
#   bash deploy/demo-servers.sh [target/release/rollcall]
#
# Needs redis-server, haproxy and PostgreSQL on 127.0.0.1:5432 (user root,
# trust), as .ci/run sets up.
set -euo pipefail
bin=$(realpath "${1:-target/release/rollcall}")
pg=${ROLLCALL_PG_BASE:-postgres://root@127.0.0.1:5432}
work=$(mktemp -d /tmp/rollcall-demo-XXXXXX)
db="rollcall_demo_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$pg/postgres" -qc "CREATE DATABASE $db"
rport=$(free_port)
redis-server --port "$rport" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
export ROLLCALL_ADMIN_TOKEN="demo-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ROLLCALL_CACHE_KEY="demo-cache-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ports=()
spids=()
for name in a b c; do
  p=$(free_port)
  ports+=("$p")
  RUST_LOG=warn ROLLCALL_STORE="$pg/$db" "$bin" serve --listen "127.0.0.1:$p" --data "$work/$name" \
    --advertise "http://127.0.0.1:$p" --redis "redis://127.0.0.1:$rport" >"$work/$name.log" 2>&1 &
  pids+=($!)
  spids+=($!)
  # The first one takes the lock before the others start.
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
done
front=$(free_port)
sed -e "s/127.0.0.1:8080/127.0.0.1:$front/" \
    -e "s/127.0.0.1:8081/127.0.0.1:${ports[0]}/" \
    -e "s/127.0.0.1:8082/127.0.0.1:${ports[1]}/" \
    -e "s/127.0.0.1:8083/127.0.0.1:${ports[2]}/" \
    -e "s/^    log stdout.*$//" "$(dirname "$0")/haproxy.cfg" >"$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
sleep 1

FRONT="http://127.0.0.1:$front" PORTS="${ports[*]}" PIDS="${spids[*]}" python3 - <<'PY'
import json, os, random, threading, time, urllib.request, urllib.error, datetime, signal

front = os.environ["FRONT"]
ports = os.environ["PORTS"].split()
pids = [int(p) for p in os.environ["PIDS"].split()]
admin = os.environ["ROLLCALL_ADMIN_TOKEN"]
servers = [f"http://127.0.0.1:{p}" for p in ports]

def call(method, url, token, body=None, ctype="application/json", timeout=5):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except OSError:
        return None, None

def check_char(first17):
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * x for c, x in zip(first17, w)) % 11]

def pid(n):
    first = f"610802{19800101 + (n // 900) % 28:08d}{n % 900 + 1:03d}"
    return first + check_char(first)

# A register of 2,000 people in one area tree, a round due in 4 s, a scanner.
csv = "person_id,name,phone,area,household\n" + "".join(
    f"{pid(n)},居民{n},139{n:08d},崇文路街道/学院社区/第{n % 4:02d}网格/01号楼,h{n // 3}\n" for n in range(2000))
st, _ = call("POST", f"{front}/v1/register", admin, csv.encode(), "text/csv")
assert st == 200, st
tz = datetime.timezone(datetime.timedelta(hours=8))
now = datetime.datetime.now(tz)
deadline = (now + datetime.timedelta(seconds=4)).replace(microsecond=0)
st, rnd = call("POST", f"{front}/v1/rounds", admin, {"name": "demo", "scope": ["崇文路街道"],
    "opens_at": (now - datetime.timedelta(hours=1)).isoformat(timespec="seconds"),
    "deadline": deadline.isoformat(timespec="seconds")})
assert st == 201, (st, rnd)
st, tok = call("POST", f"{front}/v1/tokens", admin, {"role": "scanner", "name": "demo", "site": "S01"})
assert st == 201, st
scanner = tok["token"]
time.sleep(0.3)

acked, lock = [], threading.Lock()
killed_at = [None]
first_after = [None]
statuses = {}
stop = threading.Event()
collected = (now - datetime.timedelta(minutes=5)).isoformat(timespec="seconds")

def scanner_loop(k):
    n = 0
    while not stop.is_set() and n < 40:
        people = [pid(k * 400 + n * 10 + i) for i in range(10)]
        body = {"records": [{"person_id": p, "tube_id": f"D{k}N{n}", "collected_at": collected} for p in people]}
        while True:
            st, j = call("POST", f"{front}/v1/records", scanner, body)
            with lock:
                statuses[st] = statuses.get(st, 0) + 1
            if st == 200:
                with lock:
                    acked.append(people)
                    if killed_at[0] and not first_after[0]:
                        first_after[0] = time.monotonic()
                break
            time.sleep(0.05)
        n += 1
        time.sleep(0.05)

lags = []
def lag_loop():
    while not stop.is_set():
        for s in servers:
            st, j = call("GET", f"{s}/standby", admin, timeout=1)
            if st is not None and j and j.get("role") == "standby" and j.get("lag_ms") is not None:
                lags.append(j["lag_ms"])
        time.sleep(0.05)

threads = [threading.Thread(target=scanner_loop, args=(k,)) for k in range(5)]
lt = threading.Thread(target=lag_loop)
for t in threads + [lt]:
    t.start()
time.sleep(2.0)
leader = next(i for i, s in enumerate(servers) if call("GET", f"{s}/leader", admin)[0] == 200)
os.kill(pids[leader], signal.SIGKILL)
killed_at[0] = time.monotonic()
print(f"killed the leader {servers[leader]} (pid {pids[leader]}) with SIGKILL")
new = None
while new is None and time.monotonic() - killed_at[0] < 10:
    for i, s in enumerate(servers):
        if i != leader and call("GET", f"{s}/leader", admin, timeout=1)[0] == 200:
            new = i
    time.sleep(0.01)
took_leader = time.monotonic() - killed_at[0]
for t in threads:
    t.join()
stop.set()
lt.join()
print(f"new leader {servers[new]} {took_leader * 1000:.0f} ms after the kill; "
      f"first write acknowledged through HAProxy {(first_after[0] - killed_at[0]) * 1000:.0f} ms after it")
print(f"answers seen by the scanners: {dict(sorted((str(k), v) for k, v in statuses.items()))}")
lags.sort()
if lags:
    print(f"standby lag_ms under ingest: n={len(lags)} p50={lags[len(lags) // 2]} "
          f"p99={lags[min(len(lags) - 1, int(len(lags) * 0.99))]} max={lags[-1]}")
time.sleep(max(0, deadline.timestamp() - time.time()) + 1.5)
for i, s in enumerate(servers):
    if i == leader:
        continue
    missing = sum(1 for people in acked for p in people
                  if not (call("GET", f"{s}/v1/status/{p}", admin)[1] or {}).get("last_sample_at"))
    st, r = call("GET", f"{s}/v1/rounds/{rnd['id']}", admin)
    print(f"{s}: {len(acked) * 10} acknowledged records, {missing} missing; "
          f"round {r['state']}, closed_at {r['closed_at']} (deadline {deadline.isoformat()})")
    assert missing == 0 and r["state"] == "closed"
print("every acknowledged record is on every surviving server")
PY
