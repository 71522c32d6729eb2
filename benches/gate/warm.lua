-- wrk script: looks up every ID of a file once, in order, so that every
-- later lookup of benches/gate/status.lua is answered from the cache (a miss
-- is computed and written back). Run it with one thread: once every ID is
-- sent, it ends the run (SIGINT, as Ctrl-C does) without waiting for -d.
-- Usage: wrk -t1 -c32 -d60s -s benches/gate/warm.lua http://HOST:PORT -- TOKEN IDS_FILE
local ffi = require("ffi")
ffi.cdef[[
int getpid(void);
int kill(int pid, int sig);
]]

local ids = {}
local prefix = "GET /v1/status/"
local suffix
sent, count = 0, 0 -- globals: `done` reads them from the thread

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(args[2]) do
    if line ~= "" then ids[#ids + 1] = line end
  end
  count = #ids
  suffix = " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
    "\r\nAuthorization: Bearer " .. args[1] .. "\r\n\r\n"
end

function request()
  if sent == #ids then
    -- Every ID is sent: end the run (its answers still arrive before wrk
    -- stops the thread, at its next 100 ms tick).
    ffi.C.kill(ffi.C.getpid(), 2)
    return prefix .. ids[#ids] .. suffix
  end
  sent = sent + 1
  return prefix .. ids[sent] .. suffix
end

done = function(summary, latency, requests)
  local total, of = 0, 0
  for _, t in ipairs(threads) do
    total, of = total + t:get("sent"), math.max(of, t:get("count"))
  end
  io.write(string.format("warm: %d of %d IDs looked up in %.1f s, %d errors\n", total, of,
    summary.duration / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
