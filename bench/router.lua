-- wrk script for the users router: GET, list, PATCH and POST requests, real per-request latency.
--
-- Arguments (after `--`): workload (mixed, get, list, patch or post), warm-up seconds, users,
-- nonce, search text, seeded rows the search text matches, seeded active rows.
--
-- mixed: 40 % GET /users/{id}, 30 % GET /users?limit=20&offset=N (a third with &active=true,
-- a sixth with &q=<search text>), 20 % PATCH /users/{id} {"name"}, 10 % POST /users
-- {"email", "name"}; the other workloads send one of these alone.
--
-- Each request's send time is stamped under a tag its answer carries back, so its latency is
-- exact even though wrk does not say which connection answered: the id for GET and PATCH
-- ("id": n, one table for both), the offset for list pages ("offset": N, offsets drawn
-- from 0..rows-20 of the filter, so every page shows rows), and a counter inside the POSTed
-- email (bench-<nonce>-t<thread>-<counter>@example.com, unique across runs, threads and
-- connections). A tag is never in flight twice in one thread. Answers in the first
-- `warm-up` seconds only free their stamp. wrk calls request() once in the first thread
-- before the run to check the request it builds; that one is never sent or stamped. A stamp
-- still waiting at the end that was sent before the measured window began is a connection
-- that got no answer in it. done() prints one line: BENCH_RESULT {json}. Per-operation figures
-- live in flat tables (answered_by, failed_by, empty_by, histogram_<operation>): wrk's
-- thread:get() crashes on nested tables. empty_pages counts list answers without items.

local shared = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_shared.lua")
local now_us, percentile, number, object = shared.now_us, shared.percentile, shared.number, shared.object
local SLOW_US = shared.SLOW_US
local TAG_TRIES = 64
local PAGE = 20
local OPERATIONS = { "get", "list", "patch", "post" }
local MIXES = {
  mixed = { { "get", 40 }, { "list", 30 }, { "patch", 20 }, { "post", 10 } },
  get = { { "get", 100 } },
  list = { { "list", 100 } },
  patch = { { "patch", 100 } },
  post = { { "post", 100 } },
}
local FIRST_NAMES = { "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken" }
local LAST_NAMES = { "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson" }

local threads = {}

local function literal(text)
  return (string.gsub(text, "%p", "%%%0"))
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  mix = MIXES[args[1]]
  if mix == nil then
    error("unknown workload: " .. tostring(args[1]))
  end
  warmup_us = tonumber(args[2] or "0") * 1e6
  users = tonumber(args[3] or "1")
  email_prefix = "bench-" .. (args[4] or "") .. "-t" .. thread_number .. "-"
  email_tag = '"email":%s*"' .. literal(email_prefix) .. '(%d+)@example%.com"'
  search = args[5] or ""
  last_offsets = {
    all = math.max(users - PAGE, 0),
    search = math.max(tonumber(args[6] or "0") - PAGE, 0),
    active = math.max(tonumber(args[7] or "0") - PAGE, 0),
  }
  math.randomseed(thread_number * 7919 + os.time())
  started = now_us()
  measure_from = started + warmup_us
  last_at = measure_from
  by_id, id_operation, by_offset, by_post = {}, {}, {}, {}
  posted = 0
  histogram, impls, answered_by, failed_by, empty_by = {}, {}, {}, {}, {}
  for _, name in ipairs(OPERATIONS) do
    answered_by[name], failed_by[name], empty_by[name] = 0, 0, 0
    _G["histogram_" .. name] = {}
  end
  answers, non2xx, slow, unmatched, collisions, max_us = 0, 0, 0, 0, 0, 0
  checked = thread_number ~= 1
end

local function free_tag(stamps, lowest, highest)
  for _ = 1, TAG_TRIES do
    local tag = math.random(lowest, highest)
    if stamps[tag] == nil then
      return tag
    end
  end
  collisions = collisions + 1
  return math.random(lowest, highest)
end

local function stamp(stamps, tag)
  if checked then
    stamps[tag] = now_us()
  end
  checked = true
end

local function random_name()
  local first = FIRST_NAMES[math.random(#FIRST_NAMES)]
  local last = LAST_NAMES[math.random(#LAST_NAMES)]
  return first .. " " .. last .. " " .. math.random(9999)
end

local function json_headers()
  return { ["Content-Type"] = "application/json" }
end

local function by_id_request(operation)
  local id = free_tag(by_id, 1, users)
  stamp(by_id, id)
  id_operation[id] = operation
  if operation == "get" then
    return wrk.format("GET", "/users/" .. id)
  end
  local body = string.format('{"name": "%s"}', random_name())
  return wrk.format("PATCH", "/users/" .. id, json_headers(), body)
end

local function list_request()
  local roll, filter, last = math.random(6), "", last_offsets.all
  if roll <= 2 then
    filter, last = "&active=true", last_offsets.active
  elseif roll == 3 then
    filter, last = "&q=" .. search, last_offsets.search
  end
  local offset = free_tag(by_offset, 0, last)
  stamp(by_offset, offset)
  return wrk.format("GET", "/users?limit=" .. PAGE .. "&offset=" .. offset .. filter)
end

local function post_request()
  posted = posted + 1
  stamp(by_post, posted)
  local email = email_prefix .. posted .. "@example.com"
  local body = string.format('{"email": "%s", "name": "%s"}', email, random_name())
  return wrk.format("POST", "/users", json_headers(), body)
end

local function chosen_operation()
  local roll = math.random(100)
  for _, share in ipairs(mix) do
    roll = roll - share[2]
    if roll <= 0 then
      return share[1]
    end
  end
  return mix[#mix][1]
end

function request()
  local operation = chosen_operation()
  if operation == "list" then
    return list_request()
  elseif operation == "post" then
    return post_request()
  end
  return by_id_request(operation)
end

-- The operation an answer belongs to and its send time; nil, nil if it carries no known tag.
-- Pages first: their items carry ids and emails too.
local function claimed(body)
  local offset = tonumber(string.match(body, '"offset":%s*(%d+)'))
  if offset ~= nil then
    local sent = by_offset[offset]
    by_offset[offset] = nil
    return "list", sent
  end
  local counter = tonumber(string.match(body, email_tag))
  if counter ~= nil then
    local sent = by_post[counter]
    by_post[counter] = nil
    return "post", sent
  end
  local id = tonumber(string.match(body, '"id":%s*(%d+)'))
  if id ~= nil then
    local sent, operation = by_id[id], id_operation[id]
    by_id[id], id_operation[id] = nil, nil
    return operation, sent
  end
  return nil, nil
end

local function record(operation, latency, failed, empty)
  if latency > SLOW_US then
    slow = slow + 1
  end
  if latency > max_us then
    max_us = latency
  end
  local bucket = shared.bucket_of(latency)
  histogram[bucket] = (histogram[bucket] or 0) + 1
  local operation_histogram = _G["histogram_" .. operation]
  operation_histogram[bucket] = (operation_histogram[bucket] or 0) + 1
  answered_by[operation] = answered_by[operation] + 1
  if failed then
    failed_by[operation] = failed_by[operation] + 1
  end
  if empty then
    empty_by[operation] = empty_by[operation] + 1
  end
end

function response(status, headers, body)
  local now = now_us()
  local operation, sent = claimed(body)
  if now < measure_from then
    return
  end
  last_at = now
  answers = answers + 1
  local failed = status < 200 or status > 299
  if failed then
    non2xx = non2xx + 1
  end
  local impl = headers["x-gateway-impl"] or headers["X-Gateway-Impl"]
  if impl ~= nil then
    impls[impl] = (impls[impl] or 0) + 1
  end
  if sent == nil or operation == nil then
    unmatched = unmatched + 1
  else
    record(operation, now - sent, failed, string.find(body, '"items":%s*%[%s*%]') ~= nil)
  end
end

local function add_counts(into, from)
  for key, count in pairs(from) do
    into[key] = (into[key] or 0) + count
  end
end

local function count_waiting(stamps, from)
  local waiting, unanswered = 0, 0
  for _, sent in pairs(stamps) do
    waiting = waiting + 1
    if sent < from then
      unanswered = unanswered + 1
    end
  end
  return waiting, unanswered
end

local function new_totals()
  local totals = {}
  for _, name in ipairs(OPERATIONS) do
    totals[name] = { answers = 0, non2xx = 0, empty = 0, rate = 0, histogram = {} }
  end
  return totals
end

local function operation_fields(totals)
  local fields = {}
  for name, total in pairs(totals) do
    if total.answers > 0 then
      fields[name] = object({
        answers = number(total.answers),
        non2xx = number(total.non2xx),
        empty_pages = number(total.empty),
        rate = number(total.rate),
        p50_ms = number(percentile(total.histogram, total.answers, 0.50)),
        p99_ms = number(percentile(total.histogram, total.answers, 0.99)),
      })
    end
  end
  return fields
end

function done(summary, latency, requests)
  local totals = { answers = 0, non2xx = 0, slow = 0, unmatched = 0, collisions = 0 }
  local buckets, impl_totals, per_operation, timed = {}, {}, new_totals(), 0
  local rate, outstanding, unanswered, max_latency = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    for key in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
    local from = thread:get("measure_from")
    local window = (thread:get("last_at") - from) / 1e6
    if window > 0 then
      rate = rate + thread:get("answers") / window
    end
    for bucket, count in pairs(thread:get("histogram")) do
      buckets[bucket] = (buckets[bucket] or 0) + count
      timed = timed + count
    end
    add_counts(impl_totals, thread:get("impls"))
    local answered, failed = thread:get("answered_by"), thread:get("failed_by")
    local empty = thread:get("empty_by")
    for name, total in pairs(per_operation) do
      total.answers = total.answers + answered[name]
      total.non2xx = total.non2xx + failed[name]
      total.empty = total.empty + empty[name]
      if window > 0 then
        total.rate = total.rate + answered[name] / window
      end
      add_counts(total.histogram, thread:get("histogram_" .. name))
    end
    for _, stamps in ipairs({ thread:get("by_id"), thread:get("by_offset"), thread:get("by_post") }) do
      local waiting, late = count_waiting(stamps, from)
      outstanding, unanswered = outstanding + waiting, unanswered + late
    end
    max_latency = math.max(max_latency, thread:get("max_us"))
  end
  local measured = {
    totals = totals, rate = rate, timed = timed, outstanding = outstanding,
    unanswered = unanswered, buckets = buckets, max_latency = max_latency,
    impl_totals = impl_totals,
  }
  shared.write_result(measured, summary, latency, { operations = object(operation_fields(per_operation)) })
end
