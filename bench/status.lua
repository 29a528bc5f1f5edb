-- Shared by the wrk scripts (loaded with dofile): count the answers that are not 2xx.
-- wrk counts every response in Requests/sec, and its own "Non-2xx or 3xx" line only counts
-- statuses above 399.  response() runs in each thread's Lua state and counts there; done() runs
-- in the main state, which cannot see those globals, so setup() keeps every thread and done()
-- reads each one's counter with thread:get().  Prints one line: "non2xx N".
-- (Defining response() makes wrk hand every response to Lua: a little more client CPU, the same
-- for every server.)

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non2xx = 0
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + (thread:get("non2xx") or 0)
   end
   io.write(string.format("non2xx %d\n", total))
end
