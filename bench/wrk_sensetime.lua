-- wrk script for bench/bench_receiver.py: POST SenseTime-shaped callbacks, each one a new event.
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk_sensetime.lua URL -- BODY_TEMPLATE TAG
--
-- BODY_TEMPLATE is a file holding one JSON body (signature and timestamp already filled in by
-- bench_receiver.py) with the placeholder {{N}} inside the taskId. SenseTime signs URL + timestamp
-- + key, not the body, so one signature serves every request; the taskId changes per request
-- (TAG, thread number, zero-padded counter), so the receiver stores each request as a new event
-- rather than a duplicate. The counter has a fixed width, so every request has the same length.
--
-- done() prints one machine-readable line, "WRK_JSON {...}", that bench_receiver.py parses
-- (latencies in microseconds, straight from wrk's histogram).

local threads = {}

function setup(thread)
   thread:set("thread_no", #threads)
   table.insert(threads, thread)
end

function init(args)
   local path, tag = args[1], args[2] or "run"
   local f = assert(io.open(path, "rb"))
   local template = f:read("*a")
   f:close()
   template = template:gsub("%s+$", "")
   local at = assert(template:find("{{N}}", 1, true), "body template has no {{N}}")
   local body_head = template:sub(1, at - 1) .. tag .. "-" .. thread_no .. "-"
   body_tail = template:sub(at + 5)
   local length = #body_head + 10 + #body_tail
   local host = wrk.host
   if wrk.port then
      host = host .. ":" .. wrk.port
   end
   request_head = "POST " .. wrk.path .. " HTTP/1.1\r\n"
      .. "Host: " .. host .. "\r\n"
      .. "Content-Type: application/json\r\n"
      .. "User-Agent: wrk-bench\r\n"
      .. "Content-Length: " .. length .. "\r\n"
      .. "\r\n"
      .. body_head
   counter = 0
end

function request()
   counter = counter + 1
   return request_head .. string.format("%010d", counter) .. body_tail
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,'
         .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
         .. '"p50_us":%d,"p75_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.status,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency.mean, latency.max
   ))
end
