-- wrk script for bench/collector.py: POSTs the bodies in $BENCH_BODIES (one per line), round robin,
-- to $BENCH_PATH with $BENCH_AUTH. Requests are formatted once, so wrk spends no CPU building them.
local requests, count, next_index = {}, 0, 0

init = function(args)
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = os.getenv("BENCH_AUTH") }
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    count = count + 1
    requests[count] = wrk.format("POST", os.getenv("BENCH_PATH"), headers, line)
  end
end

request = function()
  next_index = next_index % count + 1
  return requests[next_index]
end
