-- Group shard: create the batch's new groups that hash here, admit accounts that cover a
-- group's profile, refresh members' facts and count their requests per model, and report
-- every touched group. One call per group shard per batch; every key shares the shard's tag.
--
-- KEYS[1]: the shard's key base, e.g. "det:cg:{cg03}".
-- ARGV[1]: a JSON record (campaigns/store.py writes it):
--   settings  {rho, ttl_s, judge_growth, judge_every_s, hour_s}
--   create    [[group, profile = {value: weight}, ts]]
--   members   [[group, account, values, facts, models = {model: requests}]]
--             facts: [first, last, created, events, harvest, at_limit, output]; stored
--             with the values as the seventh element and the output after them
-- Reply: a JSON list, per touched group {g, record, n, joined, pending, models, latest, and
-- when a judgement is due: members (every member's facts) and profile}.
--
-- An account joins only if its values hold ``rho`` of the group's profile weight, checked
-- here against the stored profile, so a worker with an outdated view cannot admit it.

local base = KEYS[1]
local batch = cjson.decode(ARGV[1])
local s = batch.settings

local function rec(g) return base .. ':g:' .. g end     -- the group's record
local function prof(g) return base .. ':p:' .. g end    -- its profile: value -> weight
local function mem(g) return base .. ':m:' .. g end     -- its members: account -> facts
local function pend(g) return base .. ':n:' .. g end    -- members whose alert is not out yet
local function hour(g, h) return base .. ':h:' .. g .. ':' .. h end

local function fields(flat)
  local r = {}
  for k = 1, #flat, 2 do r[flat[k]] = flat[k + 1] end
  return r
end

local touched, order, joined = {}, {}, {}
local function touch(g)
  if not touched[g] then touched[g] = true; order[#order + 1] = g; joined[g] = {} end
end

for _, c in ipairs(batch.create) do
  local g, profile, ts = c[1], c[2], c[3]
  if redis.call('EXISTS', rec(g)) == 0 then
    local flat = {}
    for v, w in pairs(profile) do flat[#flat + 1] = v; flat[#flat + 1] = w end
    redis.call('HSET', prof(g), unpack(flat))
    redis.call('HSET', rec(g), 'created', ts, 'events', 0, 'judged_n', 0, 'judged_events', 0,
      'judged_ts', 0, 'alerted_n', 0, 'alerted_severity', '', 'severity', '', 'pivoted', '[]')
  end
  touch(g)
end

local profiles = {}
local function coverage(g, values)
  local p = profiles[g]
  if not p then
    p = {total = 0, w = {}}
    local flat = redis.call('HGETALL', prof(g))
    for k = 1, #flat, 2 do
      local w = tonumber(flat[k + 1]); p.w[flat[k]] = w; p.total = p.total + w
    end
    profiles[g] = p
  end
  if p.total <= 0 then return 0 end
  local held = 0
  for _, v in ipairs(values) do held = held + (p.w[v] or 0) end
  return held / p.total
end

-- What the members' updates change in their group's record, written once per group below.
local spans, events, hours = {}, {}, {}
local exists = {}
local function group_exists(g)
  if exists[g] == nil then exists[g] = redis.call('EXISTS', rec(g)) == 1 end
  return exists[g]
end

for _, m in ipairs(batch.members) do
  local g, account, values, facts, models = m[1], m[2], m[3], m[4], m[5]
  if group_exists(g) then
    local before = redis.call('HGET', mem(g), account)
    local member = before ~= false
    if not member and coverage(g, values) >= s.rho then
      member = true
      redis.call('SADD', pend(g), account)
      touch(g)
      table.insert(joined[g], account)
    end
    if member then
      touch(g)
      -- The group's events: the sum of its members' counts, kept by the change in each one's
      -- count, so a batch processed again (same facts) changes nothing.
      events[g] = (events[g] or 0) + facts[4] - (before and cjson.decode(before)[4] or 0)
      -- Facts and values together: a judgement re-forms the profile from members' values.
      local stored = {unpack(facts, 1, 6)}
      stored[7] = values
      stored[8] = facts[7]
      redis.call('HSET', mem(g), account, cjson.encode(stored))
      local span = spans[g]
      if not span then span = {facts[1], facts[2]}; spans[g] = span end
      span[1], span[2] = math.min(span[1], facts[1]), math.max(span[2], facts[2])
      local hk = hour(g, math.floor(facts[2] / s.hour_s))
      for model, n in pairs(models) do redis.call('HINCRBY', hk, model, n) end
      hours[hk] = true
    end
  end
end

-- The group's span: from its earliest member's first request to the latest request.
for g, span in pairs(spans) do
  local r = redis.call('HMGET', rec(g), 'first', 'last')
  local first, last = tonumber(r[1] or span[1]), tonumber(r[2] or span[2])
  redis.call('HSET', rec(g), 'first', math.min(first, span[1]), 'last', math.max(last, span[2]))
  if events[g] ~= 0 then redis.call('HINCRBY', rec(g), 'events', events[g]) end
end
for hk in pairs(hours) do redis.call('EXPIRE', hk, 3 * s.hour_s) end

local out = {}
for _, g in ipairs(order) do
  local r = fields(redis.call('HGETALL', rec(g)))
  local n = redis.call('HLEN', mem(g))
  local entry = {g = g, record = r, n = n, joined = joined[g],
                 pending = redis.call('SMEMBERS', pend(g))}
  -- Judged again when its members or events grew by ``judge_growth``, or ``judge_every_s`` of
  -- event time passed. The worker records a judgement with the batch's state write, so a
  -- batch processed again after a crash is judged again.
  local latest = tonumber(r.last or 0)
  local judged_n, judged_events = tonumber(r.judged_n or 0), tonumber(r.judged_events or 0)
  local events = tonumber(r.events or 0)
  if (n > judged_n and n >= judged_n * s.judge_growth)
      or (events > judged_events and events >= judged_events * s.judge_growth)
      or latest - tonumber(r.judged_ts or 0) >= s.judge_every_s then
    entry.members = redis.call('HGETALL', mem(g))
    entry.profile = redis.call('HGETALL', prof(g))
  end
  -- Requests per model over the last two hours of the group's activity.
  local now_h = math.floor(latest / s.hour_s)
  entry.models = {redis.call('HGETALL', hour(g, now_h)), redis.call('HGETALL', hour(g, now_h - 1))}
  entry.latest = latest
  for _, key in ipairs({rec(g), prof(g), mem(g), pend(g)}) do redis.call('EXPIRE', key, s.ttl_s) end
  out[#out + 1] = entry
end
return cjson.encode(out)
