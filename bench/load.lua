-- wrk script: random ids, warm-up on the measured connections, real per-request latency.
--
-- Arguments (after `--`): path template ("/users/{id}" or a fixed path), warm-up seconds,
-- highest id. Each request's send time is stamped under the id it asks for; the answer
-- carries that id ("id": n in the JSON), so its latency is exact even though wrk does not
-- say which connection answered. An id is never in flight twice in one thread. Answers in
-- the first `warm-up` seconds only free their stamp. wrk calls request() once in the first
-- thread before the run to check the request it builds; that one is never sent or stamped. A stamp still waiting at the end that
-- was sent before the measured window began is a connection that got no answer in it.
-- done() prints one line: BENCH_RESULT {json}.

local shared = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_shared.lua")
local now_us = shared.now_us
local SLOW_US = shared.SLOW_US
local ID_TRIES = 64

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  path_template = args[1] or "/"
  warmup_us = tonumber(args[2] or "0") * 1e6
  max_id = tonumber(args[3] or "1")
  local at = string.find(path_template, "{id}", 1, true)
  has_id = at ~= nil
  if has_id then
    prefix = string.sub(path_template, 1, at - 1)
    suffix = string.sub(path_template, at + 4)
  end
  math.randomseed(thread_number * 7919 + os.time())
  started = now_us()
  measure_from = started + warmup_us
  last_at = measure_from
  sent, histogram, impls = {}, {}, {}
  answers, non2xx, slow, unmatched, collisions, max_us = 0, 0, 0, 0, 0, 0
  checked = thread_number ~= 1
end

local function free_id()
  for _ = 1, ID_TRIES do
    local id = math.random(max_id)
    if sent[id] == nil then
      return id
    end
  end
  collisions = collisions + 1
  return math.random(max_id)
end

function request()
  if not has_id then
    return wrk.format(nil, path_template)
  end
  local id = free_id()
  if checked then
    sent[id] = now_us()
  end
  checked = true
  return wrk.format(nil, prefix .. id .. suffix)
end

local function record(latency)
  if latency > SLOW_US then
    slow = slow + 1
  end
  if latency > max_us then
    max_us = latency
  end
  local bucket = shared.bucket_of(latency)
  histogram[bucket] = (histogram[bucket] or 0) + 1
end

function response(status, headers, body)
  local now = now_us()
  local stamp = nil
  if has_id then
    local id = tonumber(string.match(body, '"id":%s*(%d+)'))
    if id ~= nil then
      stamp = sent[id]
      sent[id] = nil
    end
  end
  if now < measure_from then
    return
  end
  last_at = now
  answers = answers + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  local impl = headers["x-gateway-impl"] or headers["X-Gateway-Impl"]
  if impl ~= nil then
    impls[impl] = (impls[impl] or 0) + 1
  end
  if stamp == nil then
    unmatched = unmatched + 1
  else
    record(now - stamp)
  end
end

function done(summary, latency, requests)
  local totals = { answers = 0, non2xx = 0, slow = 0, unmatched = 0, collisions = 0 }
  local buckets, impl_totals, timed = {}, {}, 0
  local rate, outstanding, unanswered, max_latency = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    for key in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
    local window = (thread:get("last_at") - thread:get("measure_from")) / 1e6
    if window > 0 then
      rate = rate + thread:get("answers") / window
    end
    for bucket, count in pairs(thread:get("histogram")) do
      buckets[bucket] = (buckets[bucket] or 0) + count
      timed = timed + count
    end
    for impl, count in pairs(thread:get("impls")) do
      impl_totals[impl] = (impl_totals[impl] or 0) + count
    end
    local from = thread:get("measure_from")
    for _, stamp in pairs(thread:get("sent")) do
      outstanding = outstanding + 1
      if stamp < from then
        unanswered = unanswered + 1
      end
    end
    max_latency = math.max(max_latency, thread:get("max_us"))
  end
  local measured = {
    totals = totals, rate = rate, timed = timed, outstanding = outstanding,
    unanswered = unanswered, buckets = buckets, max_latency = max_latency,
    impl_totals = impl_totals,
  }
  shared.write_result(measured, summary, latency)
end
