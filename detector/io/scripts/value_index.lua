-- Value shard: index the batch's evidence values that hash to this shard, and report each
-- value's holders count (df), its owning group, and its holders' summaries when a group may
-- be seeded from it. One call per value shard per batch; every key shares the shard's tag.
--
-- KEYS[1]: the shard's key base, e.g. "det:cv:{cv07}".
-- ARGV[1]: a JSON record (campaigns/store.py writes it):
--   settings  {window_s, cap, min_members, seed_growth, seed_holders, ttl_s}
--   index     [[value, account, ts, summary]]  holders to add (summary: JSON list of values)
--   report    [value]                           values to report on
-- Reply: a JSON list, per reported value {v, df, owner, seeds = [[account, summary]] or absent}.
--
-- A value's holders are a sorted set (account -> last seen), trimmed to the window and to
-- ``cap`` accounts; past the cap its weight is 0, so summaries stop being kept beside it.

local base = KEYS[1]
local batch = cjson.decode(ARGV[1])
local s = batch.settings
local owners = base .. ':o'     -- value -> owning group id
local seeded = base .. ':seed'  -- value -> holders count at the last seeding attempt

local function holders(v) return base .. ':v:' .. v end
local function summaries(v) return base .. ':s:' .. v end

local touched = {}
for _, entry in ipairs(batch.index) do
  local v, account, ts, summary = entry[1], entry[2], entry[3], entry[4]
  local key = holders(v)
  redis.call('ZADD', key, ts, account)
  if not touched[v] then
    touched[v] = ts
  elseif ts > touched[v] then
    touched[v] = ts
  end
  if redis.call('ZCARD', key) <= s.cap then
    redis.call('HSET', summaries(v), account, summary)
    redis.call('EXPIRE', summaries(v), s.ttl_s)
  end
end

for v, ts in pairs(touched) do
  local key = holders(v)
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. tostring(ts - s.window_s))
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. tostring(ts - s.window_s))
    for i = 1, #old, 4000 do
      redis.call('HDEL', summaries(v), unpack(old, i, math.min(i + 3999, #old)))
    end
  end
  local card = redis.call('ZCARD', key)
  if card > s.cap then  -- keep the most recent; the value is saturated (weight 0) anyway
    redis.call('ZREMRANGEBYRANK', key, 0, -(s.cap + 1))
    redis.call('DEL', summaries(v))
  end
  redis.call('EXPIRE', key, s.ttl_s)
end

local out = {}
for _, v in ipairs(batch.report) do
  local df = redis.call('ZCARD', holders(v))
  local owner = redis.call('HGET', owners, v) or ''
  local entry = {v = v, df = df, owner = owner}
  if owner == '' and df >= s.min_members and df < s.cap then
    local last = tonumber(redis.call('HGET', seeded, v) or 0)
    if df >= last * s.seed_growth then
      redis.call('HSET', seeded, v, df)
      redis.call('EXPIRE', seeded, s.ttl_s)
      -- The most recent holders' summaries, at most seed_holders: a group forms from them, and
      -- the other holders join it as they come (their values name it as owner).
      local recent = redis.call('ZREVRANGE', holders(v), 0, s.seed_holders - 1)
      local found = redis.call('HMGET', summaries(v), unpack(recent))
      local seeds = {}
      for i, account in ipairs(recent) do
        if found[i] then seeds[#seeds + 1] = account; seeds[#seeds + 1] = found[i] end
      end
      entry.seeds = seeds
    end
  end
  out[#out + 1] = entry
end
redis.call('EXPIRE', owners, s.ttl_s)
return cjson.encode(out)
