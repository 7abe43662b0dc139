-- wrk script for bench/collector.py: POSTs the bodies in $BENCH_BODIES (one per line), round robin,
-- to $BENCH_PATH with $BENCH_AUTH. Requests are formatted once, so wrk spends no CPU building them.
-- With $BENCH_FORWARDED_FOR (one address per line), body i comes with X-Forwarded-For: address i.
local requests, count, next_index = {}, 0, 0

init = function(args)
  local addresses = {}
  local forwarded = os.getenv("BENCH_FORWARDED_FOR")
  if forwarded then
    for line in io.lines(forwarded) do addresses[#addresses + 1] = line end
  end
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    count = count + 1
    local headers = { ["Content-Type"] = "application/json", ["Authorization"] = os.getenv("BENCH_AUTH") }
    if #addresses > 0 then
      headers["X-Forwarded-For"] = addresses[(count - 1) % #addresses + 1]
    end
    requests[count] = wrk.format("POST", os.getenv("BENCH_PATH"), headers, line)
  end
end

request = function()
  next_index = next_index % count + 1
  return requests[next_index]
end
