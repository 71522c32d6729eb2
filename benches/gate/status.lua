-- wrk script: GET /v1/status/{id} over random IDs of a city.
-- Usage: wrk -t2 -c64 -d20s -s benches/gate/status.lua http://HOST:PORT -- TOKEN IDS_FILE
--
-- Built so that wrk measures the server, not itself (both share two cores):
-- - Each request is the ID between a prefix and a suffix built once. Calling
--   wrk.format per request (a headers table, rebuilt each time) cost wrk
--   more CPU than the pass-through spent answering.
-- - The garbage collector is stopped (a 15 s run grows wrk by ~300 MB).
--   Its pauses stalled a wrk thread with its 32 connections, and wrk counts
--   the stall in every waiting request's latency: that was the 30-110 ms
--   p99.9 measured against every server, the 30-line pass-through included.
--   About one run in four still has a stall of wrk's own (p99.9 25-140 ms
--   against any server; docs/benchmarks.md, "measuring both sides alike").
-- - init only reads the IDs: wrk starts each thread right after its init
--   and its clock after the last one, so a slow init adds requests to the
--   count without their time. Reading the IDs still takes ~0.55 s, so
--   with -t2 every rate reads ~2% high (ratios between servers hold).
local ids = {}
local prefix = "GET /v1/status/"
local suffix

function init(args)
  for line in io.lines(args[2]) do
    ids[#ids + 1] = line
  end
  suffix = " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
    "\r\nAuthorization: Bearer " .. args[1] .. "\r\n\r\n"
  math.randomseed(os.time() + math.random(1000))
  collectgarbage("stop")
end

function request()
  return prefix .. ids[math.random(#ids)] .. suffix
end

done = function(summary, latency, requests)
  io.write(string.format("requests/s %.0f  p50 %.2fms  p99 %.2fms  p99.9 %.2fms  errors %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
