-- wrk script: GET /v1/status/{id} over random IDs of a city.
-- Usage: wrk -t2 -c64 -d20s -s benches/gate/status.lua http://HOST:PORT -- TOKEN IDS_FILE
-- IDS_FILE: one 18-character ID per line. Looks up IDs already in the
-- cache: run benches/gate/warm.lua over the same file first.
--
-- Built so that wrk measures the server, not itself (both share two cores):
-- - A request costs wrk no allocation. Each thread builds POOL requests in
--   init (random IDs of the file, each a whole request) and sends one of
--   them at random each time. Building each request as it was sent (one
--   new string per request) stalled wrk itself: with 1 M IDs as strings,
--   LuaJIT's string table (most likely) stalled a thread in most runs (p99.9
--   of 30-150 ms against every server, the 30-line pass-through included);
--   with the IDs in one string and the collector running, its steps put
--   p99.9 at 17-25 ms, and at 4-10 ms with a small heap (docs/benchmarks.md,
--   "a load script that allocates nothing").
-- - Every thread starts sending at one moment. wrk runs the inits one after
--   another on its main thread and starts each thread as soon as its init
--   returns, but its clock only when the last one has; so the first threads'
--   requests meanwhile counted without their time (every rate read ~2%
--   high). The first init to finish sets a common start far enough ahead
--   for the others, each thread's first request waits for it, and `done`
--   takes the time before it (no thread sending) out of the rate. So the
--   script's line ("requests/s ...") is the rate; wrk's own "Requests/sec"
--   still counts that wait and reads low.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rc_timespec;
int clock_gettime(int clock, rc_timespec *ts);
int nanosleep(const rc_timespec *req, rc_timespec *rem);
int setenv(const char *name, const char *value, int overwrite);
char *getenv(const char *name);
int getpid(void);
unsigned long pthread_self(void);
]]

-- Requests built per thread: ~0.2 s of init and ~65 MB each; with -t2 about
-- 40% of a million IDs are in play, each lookup still its own Redis read.
local POOL = 262144
local WIDTH = 19 -- an ID and its newline
local pool = {}
local start_at, init_thread

local function now() -- CLOCK_MONOTONIC, in seconds
  local ts = ffi.new("rc_timespec")
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local function sleep_until(t)
  local left = t - now()
  if left > 0 then
    local ts = ffi.new("rc_timespec")
    ts.tv_sec = math.floor(left)
    ts.tv_nsec = math.floor((left - math.floor(left)) * 1e9)
    ffi.C.nanosleep(ts, nil)
  end
end

-- The common start, kept in this process's environment as "PID START READY"
-- (CLOCK_MONOTONIC seconds; READY: when the latest init finished). The PID
-- tells this run's value from one inherited from elsewhere.
local SHARED = "ROLLCALL_WRK_START"

local function shared()
  local v = ffi.C.getenv(SHARED)
  if v == nil then return nil end
  local pid, start, ready = ffi.string(v):match("^(%d+) ([%d.]+) ([%d.]+)$")
  if pid ~= tostring(ffi.C.getpid()) then return nil end
  return tonumber(start), tonumber(ready)
end

-- The first init sets the start three of its own durations ahead (room for
-- up to four threads); every init records that it is ready.
local function common_start(ready, took)
  local start = shared() or ready + 3 * took + 0.05
  ffi.C.setenv(SHARED, string.format("%d %.6f %.6f", ffi.C.getpid(), start, ready), 1)
  return start
end

function init(args)
  local began = now()
  local f = assert(io.open(args[2], "rb"))
  local all = f:read("*a")
  f:close()
  if all:sub(-1) ~= "\n" then all = all .. "\n" end
  assert(#all % WIDTH == 0, "status.lua: IDS_FILE must hold one 18-character ID per line")
  local n = #all / WIDTH
  math.randomseed(os.time() + math.random(1000))
  local prefix = "GET /v1/status/"
  local suffix = " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
    "\r\nAuthorization: Bearer " .. args[1] .. "\r\n\r\n"
  for i = 1, POOL do
    local at = (math.random(n) - 1) * WIDTH + 1
    pool[i] = prefix .. all:sub(at, at + 17) .. suffix
  end
  all = nil
  collectgarbage("collect")
  collectgarbage("stop") -- nothing is allocated from here on
  init_thread = ffi.C.pthread_self()
  local ready = now()
  start_at = common_start(ready, ready - began)
  if ready > start_at then
    io.stderr:write(string.format(
      "status.lua: a thread was ready %.0f ms after the common start; rates read high\n",
      (ready - start_at) * 1000))
  end
end

local function next_request()
  return pool[math.random(POOL)]
end

-- A thread's first request waits for the common start, then hands over.
-- wrk also calls request() once on its main thread right after an init, to
-- check it: that call does not wait.
function request()
  if ffi.C.pthread_self() == init_thread then
    return next_request()
  end
  sleep_until(start_at)
  request = next_request
  return next_request()
end

-- Seconds of wrk's clock before the common start, when no thread sent.
local function idle_seconds()
  local start, ready = shared()
  if not start then return 0 end
  return math.max(0, start - ready)
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6 - idle_seconds()
  io.write(string.format("requests/s %.0f  p50 %.2fms  p99 %.2fms  p99.9 %.2fms  errors %d\n",
    summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
