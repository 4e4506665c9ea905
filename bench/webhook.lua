-- wrk script of the webhook bench: each thread POSTs the pre-signed bodies of its own file
-- (<prefix><thread>.tsv: a first line with how many to count, then "signature<TAB>body" lines),
-- each body once, and stops once that many answers came back. The lines after the counted ones
-- are spares for the requests already in flight on other connections when the thread stops.
-- Requests are formatted up front, so each costs the generator a table lookup. wrk's main thread
-- sleeps for --duration whatever its threads do, so each thread prints "ready" before its first
-- request and "done" after its last answer: the caller times the run from those lines and ends
-- wrk with SIGINT, after which wrk prints its summary (the last line, JSON) from `done` below.

local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   threads[#threads + 1] = thread
end

function init(args)
   local path = args[1] .. thread_index .. ".tsv"
   local lines = io.lines(path)
   count = tonumber(lines())
   prepared = {}
   for line in lines do
      local tab = line:find("\t", 1, true)
      local headers = {
         ["Content-Type"] = "application/json",
         ["X-Hub-Signature-256"] = line:sub(1, tab - 1),
      }
      prepared[#prepared + 1] = wrk.format("POST", nil, headers, line:sub(tab + 1))
   end
   prepared_count = #prepared
   sent = 0
   answered = 0
   stopped = false
   io.write("ready\n")
   io.stdout:flush()
end

function request()
   sent = sent + 1
   return prepared[(sent - 1) % #prepared + 1]
end

function response(status, headers, body)
   answered = answered + 1
   if answered >= count and not stopped then
      stopped = true
      io.write("done\n")
      io.stdout:flush()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local prepared_total, sent_total = 0, 0
   for _, thread in ipairs(threads) do
      prepared_total = prepared_total + thread:get("prepared_count")
      sent_total = sent_total + thread:get("sent")
   end
   io.write(string.format(
      '{"prepared": %d, "sent": %d, "requests": %d, "non_2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
      prepared_total, sent_total, summary.requests, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      latency:percentile(50), latency:percentile(99)))
end
