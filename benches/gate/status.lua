-- wrk script: GET /v1/status/{id} over random IDs of a city.
-- Usage: wrk -t2 -c64 -d20s -s benches/gate/status.lua http://HOST:PORT -- TOKEN IDS_FILE
local ids = {}
local token

function init(args)
  token = args[1]
  for line in io.lines(args[2]) do
    ids[#ids + 1] = line
  end
  math.randomseed(os.time() + math.random(1000))
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/status/" .. id, { ["Authorization"] = "Bearer " .. token })
end

done = function(summary, latency, requests)
  io.write(string.format("requests/s %.0f  p50 %.2fms  p99 %.2fms  p99.9 %.2fms  errors %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
