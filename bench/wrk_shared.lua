-- What load.lua and router.lua share: a monotonic clock, the latency histogram, JSON output.
-- Each script loads it with dofile() from its own directory, once per wrk thread.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")
local BUCKETS_PER_E = 200 -- histogram buckets: 0.5 % wide

local shared = { SLOW_US = 2e6 }

function shared.now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

function shared.bucket_of(latency)
  return math.floor(math.log(math.max(latency, 1)) * BUCKETS_PER_E)
end

function shared.percentile(buckets, total, fraction)
  if total == 0 then
    return nil
  end
  local keys = {}
  for bucket in pairs(buckets) do
    table.insert(keys, bucket)
  end
  table.sort(keys)
  local wanted, seen = fraction * total, 0
  for _, bucket in ipairs(keys) do
    seen = seen + buckets[bucket]
    if seen >= wanted then
      return math.exp((bucket + 0.5) / BUCKETS_PER_E) / 1e3
    end
  end
  return math.exp((keys[#keys] + 0.5) / BUCKETS_PER_E) / 1e3
end

function shared.number(value)
  if value == nil then
    return "null"
  end
  return string.format("%.6g", value)
end

function shared.object(fields)
  local parts = {}
  for key, value in pairs(fields) do
    table.insert(parts, string.format("%q:%s", key, value))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The BENCH_RESULT line both scripts end with: `measured` holds what their threads added
-- up (totals, rate, timed, outstanding, unanswered, buckets, max_latency, impl_totals),
-- `extra` any fields of the script's own.
function shared.write_result(measured, summary, latency, extra)
  local impl_fields = {}
  for impl, count in pairs(measured.impl_totals) do
    impl_fields[impl] = shared.number(count)
  end
  local totals, timed, errors = measured.totals, measured.timed, summary.errors
  local fields = {
    answers = shared.number(totals.answers),
    rate = shared.number(measured.rate),
    non2xx = shared.number(totals.non2xx),
    slow = shared.number(totals.slow),
    unmatched = shared.number(totals.unmatched),
    collisions = shared.number(totals.collisions),
    timed = shared.number(timed),
    outstanding = shared.number(measured.outstanding),
    unanswered = shared.number(measured.unanswered),
    p50_ms = shared.number(shared.percentile(measured.buckets, timed, 0.50)),
    p90_ms = shared.number(shared.percentile(measured.buckets, timed, 0.90)),
    p99_ms = shared.number(shared.percentile(measured.buckets, timed, 0.99)),
    max_ms = shared.number(timed > 0 and measured.max_latency / 1e3 or nil),
    impls = shared.object(impl_fields),
    wrk_requests = shared.number(summary.requests),
    wrk_p99_ms = shared.number(latency:percentile(99.0) / 1e3),
    connect_errors = shared.number(errors.connect),
    read_errors = shared.number(errors.read),
    write_errors = shared.number(errors.write),
    timeouts = shared.number(errors.timeout),
  }
  for name, value in pairs(extra or {}) do
    fields[name] = value
  end
  io.write("BENCH_RESULT " .. shared.object(fields) .. "\n")
end

return shared
