local base = KEYS[1]
local K, cap, ttl, listed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local growth, single_ttl, churn = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- How far each partition's traffic is counted: a batch processed again after a crash links its
-- accounts again (idempotent) but counts only events past these offsets.
local first = 9 + 2 * tonumber(ARGV[8])
for j = 9, first - 1, 2 do
  local prev = tonumber(redis.call('HGET', base .. ':lwm', ARGV[j]) or -1)
  if tonumber(ARGV[j + 1]) > prev then redis.call('HSET', base .. ':lwm', ARGV[j], ARGV[j + 1]) end
end
local uf = base .. ':uf'
local touched, sources = {}, {}

-- Caches for this call: the same accounts and values are looked up many times per batch.
local parents, kinds_of, expired = {}, {}, {}

local function expire(key, seconds)
  if expired[key] ~= seconds then redis.call('EXPIRE', key, seconds); expired[key] = seconds end
end

-- Add an account to an evidence index of at most ``cap`` accounts; returns how many it holds.
-- A value only one account has used lives briefly: most are one-offs (per-request
-- fingerprints, a user's own card), and they would otherwise fill Redis for the full TTL.
local function add_capped(key, ts, account)
  local added = redis.call('ZADD', key, ts, account)
  local card = redis.call('ZCARD', key)
  if added == 1 and card > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
    card = cap
  end
  expire(key, card > 1 and ttl or single_ttl)
  return card
end

local function parent(x)
  local p = parents[x]
  if p == nil then p = redis.call('HGET', uf, x) or false; parents[x] = p end
  return p
end

local function set_parent(x, p)
  redis.call('HSET', uf, x, p)
  parents[x] = p
end

local function rec(root) return base .. ':c:' .. root end
local function mem(root) return base .. ':m:' .. root end
-- Members whose own alert is not yet published: drained by the write after publishing, so a
-- crash in between announces them again (same alert ids) instead of losing them.
local function pend(root) return base .. ':p:' .. root end

local function find(x)
  local root = x
  local p = parent(root)
  while p and p ~= root do root = p; p = parent(root) end
  local cur = x
  while cur ~= root do
    local nxt = parent(cur)
    if nxt ~= root then set_parent(cur, root) end
    cur = nxt
  end
  return root
end

local function older(a, b)
  local ca, cb = redis.call('HGET', rec(a), 'created'), redis.call('HGET', rec(b), 'created')
  if ca and not cb then return true end
  if cb and not ca then return false end
  if ca and cb and tonumber(ca) ~= tonumber(cb) then return tonumber(ca) < tonumber(cb) end
  return a < b
end

local function add_kind(root, kind)
  local kinds = kinds_of[root]
  if kinds == nil then kinds = redis.call('HGET', rec(root), 'kinds') or '' end
  if not string.find(',' .. kinds .. ',', ',' .. kind .. ',', 1, true) then
    kinds = kinds == '' and kind or (kinds .. ',' .. kind)
    redis.call('HSET', rec(root), 'kinds', kinds)
  end
  kinds_of[root] = kinds
end

-- Join an account node to an evidence node; returns nothing, records what changed.
local function join(account, enode, kind, ts)
  local anode = 'a:' .. account
  local was_member = parent(anode) ~= false
  local ra, re = find(anode), find(enode)
  if ra == re then add_kind(re, kind); return end
  local winner, loser = re, ra
  if older(ra, re) then winner, loser = ra, re end
  if redis.call('EXISTS', rec(winner)) == 0 then
    redis.call('HSET', rec(winner), 'created', ts, 'n', 0, 'alerted', 0)
  end
  set_parent(loser, winner)
  if parent(winner) ~= winner then set_parent(winner, winner) end
  if redis.call('EXISTS', rec(loser)) == 1 then
    local l = redis.call('HGETALL', rec(loser))
    local lf = {}
    for i = 1, #l, 2 do lf[l[i]] = l[i + 1] end
    redis.call('HINCRBY', rec(winner), 'n', tonumber(lf['n'] or 0))
    redis.call('HINCRBY', rec(winner), 'events', tonumber(lf['events'] or 0))
    for k in string.gmatch(lf['kinds'] or '', '[^,]+') do add_kind(winner, k) end
    redis.call('ZUNIONSTORE', mem(winner), 2, mem(winner), mem(loser), 'AGGREGATE', 'MIN')
    redis.call('SUNIONSTORE', pend(winner), pend(winner), pend(loser))
    redis.call('DEL', rec(loser), mem(loser), pend(loser))
    kinds_of[loser] = nil
    touched[loser] = nil
  end
  if not was_member then
    redis.call('HINCRBY', rec(winner), 'n', 1)
    redis.call('HINCRBY', rec(winner), 'joined:' .. math.floor(ts / 3600), 1)
    redis.call('ZADD', mem(winner), ts, account)
    redis.call('SADD', pend(winner), account)
  end
  add_kind(winner, kind)
  redis.call('ZREMRANGEBYRANK', mem(winner), 0, -(listed + 1))
  touched[winner] = true
end

local function sorted(list) table.sort(list); return list end

-- Index one evidence value of an account and join what it links.
local function index(account, ev, ts, suspect)
  local kind = string.match(ev, '^([^:]+)')
  local strong = kind == 'bill' or kind == 'cfp'
  local enode = 'e:' .. ev
  if suspect and kind ~= 'range' then
    local ix = base .. ':ix:' .. ev
    local card = add_capped(ix, ts, account)
    if card >= K then
      -- A value that joins the graph now brings every account that shared it; once it is
      -- in, each account joins on its own when its traffic comes by (no rescans).
      -- Members join in name order, not index order: the first one names a new campaign, and
      -- its id should not depend on when each member's entry was last refreshed.
      local is_new = parent(enode) == false
      local members = is_new and sorted(redis.call('ZRANGE', ix, 0, -1)) or {account}
      for _, m in ipairs(members) do join(m, enode, kind, ts) end
      if strong and is_new then
        for _, m in ipairs(sorted(redis.call('ZRANGE', base .. ':ax:' .. ev, 0, -1))) do join(m, enode, kind, ts) end
      end
    end
  end
  if strong then
    add_capped(base .. ':ax:' .. ev, ts, account)
    if not suspect and parent(enode) ~= false then join(account, enode, kind, ts) end
  end
end

local i = first
while i <= #ARGV do
  local account, ts, suspect, n = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2] == '1', tonumber(ARGV[i + 5])
  for j = i + 6, i + 5 + n do
    -- '~' before a value: this worker indexed it for this account lately, with the same suspect
    -- status, so its index entries and joins are in place; it comes for its traffic only.
    if string.byte(ARGV[j]) ~= 126 then index(account, ARGV[j], ts, suspect) end
  end
  i = i + 7 + n + tonumber(ARGV[i + 6 + n]) * 2
end

-- Second pass, once the batch is linked: traffic of members, per model and per origin.
-- Counts are summed here and written once per key below: a call costs more than a table update.
local exists, campaign_events, campaign_last, campaign_caps, joined_at = {}, {}, {}, {}, {}
local first_seen, pop, cm, src_counts, src_accounts, src_campaign = {}, {}, {}, {}, {}, {}
local src_fresh = {}
local function add(t, key, field, n)
  local row = t[key]
  if row == nil then row = {}; t[key] = row end
  row[field] = (row[field] or 0) + n
end
local function push(t, key, value)
  local list = t[key]
  if list == nil then list = {}; t[key] = list end
  list[#list + 1] = value
end
i = first
while i <= #ARGV do
  local account, ts, events, capability, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3]), ARGV[i + 4], tonumber(ARGV[i + 5])
  -- Which campaign, if any, the account belongs to now.
  local anode = 'a:' .. account
  local root = nil
  if parent(anode) ~= false then
    root = find(anode)
    if exists[root] == nil then exists[root] = redis.call('EXISTS', rec(root)) == 1 end
    if exists[root] then
      add(campaign_events, root, 'events', events)
      campaign_last[root] = ARGV[i + 1]
      if capability ~= '' then add(campaign_caps, root, 'cap:' .. capability, events) end
      push(joined_at, root, ARGV[i + 1])  -- scores are last activity: quiet members show
      push(joined_at, root, account)
      touched[root] = true
    else
      root = nil
    end
  end
  -- Requests per model and event-time hour: the population's and the campaign's.
  local hour = math.floor(ts / 3600)
  local nm = tonumber(ARGV[i + 6 + n])
  for j = i + 7 + n, i + 6 + n + 2 * nm, 2 do
    local model, count = ARGV[j], tonumber(ARGV[j + 1])
    if first_seen[model] == nil then first_seen[model] = ARGV[i + 1] end
    add(pop, base .. ':pop:' .. hour, model, count)
    if root then add(cm, base .. ':cm:' .. root .. ':' .. hour, model, count) end
  end
  -- Traffic mix of the account's network and client origins. A marked origin was indexed for
  -- the account lately (within index_refresh_s, far under the TTL): the account is in the
  -- origin's HyperLogLog already and the keys' TTLs were set then, so only its traffic counts.
  for j = i + 6, i + 5 + n do
    local ev = ARGV[j]
    local marked = string.byte(ev) == 126
    if marked then ev = string.sub(ev, 2) end
    local kind = string.match(ev, '^([^:]+)')
    if kind == 'range' or kind == 'asnua' then
      add(src_counts, ev, 'requests', events)
      if not marked then
        push(src_accounts, base .. ':sa:' .. ev, account)
        src_fresh[ev] = true
      end
      if root then
        add(src_counts, ev, 'campaign_requests', events)
        push(src_accounts, base .. ':sc:' .. ev, account)
        src_campaign[ev] = root
        sources[ev] = true
      end
    end
  end
  i = i + 7 + n + 2 * nm
end

-- Commands with many arguments go in slices: Lua's unpack has a stack limit.
local function call_many(command, key, list)
  for s = 1, #list, 4000 do
    redis.call(command, key, unpack(list, s, math.min(s + 3999, #list)))
  end
end
for model, ts in pairs(first_seen) do redis.call('HSETNX', base .. ':models', model, ts) end
for root, row in pairs(campaign_events) do
  redis.call('HINCRBY', rec(root), 'events', row['events'])
  redis.call('HSET', rec(root), 'last', campaign_last[root])
  for field, count in pairs(campaign_caps[root] or {}) do redis.call('HINCRBY', rec(root), field, count) end
  call_many('ZADD', mem(root), joined_at[root])
end
for _, counts in ipairs({pop, cm}) do
  for key, row in pairs(counts) do
    for model, count in pairs(row) do redis.call('HINCRBY', key, model, count) end
    expire(key, 3 * 86400)
  end
end
for ev, row in pairs(src_counts) do
  local src = base .. ':src:' .. ev
  local fresh = src_fresh[ev]
  for field, count in pairs(row) do
    -- A count that is only this call's is a new key (or one Redis lost): it needs its TTL.
    if redis.call('HINCRBY', src, field, count) == count and field == 'requests' then fresh = true end
  end
  if src_campaign[ev] then redis.call('HSET', src, 'campaign', src_campaign[ev]) end
  if fresh then expire(src, ttl) end
end
for key, accounts in pairs(src_accounts) do
  call_many('PFADD', key, accounts)
  expire(key, ttl)
end
redis.call('EXPIRE', uf, ttl)
redis.call('EXPIRE', base .. ':models', ttl)
redis.call('EXPIRE', base .. ':lwm', ttl)

local out = {}
for root, _ in pairs(touched) do
  if redis.call('EXISTS', rec(root)) == 1 then
    redis.call('EXPIRE', rec(root), ttl)
    redis.call('EXPIRE', mem(root), ttl)
    redis.call('EXPIRE', pend(root), ttl)
    local f = redis.call('HGETALL', rec(root))
    local new = redis.call('SMEMBERS', pend(root))
    local r = {}
    for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
    local n, alerted = tonumber(r['n'] or 0), tonumber(r['alerted'] or 0)
    local listing = {}
    if n >= K and (alerted == 0 or n >= alerted * growth) then
      listing = redis.call('ZREVRANGE', mem(root), 0, listed - 1)
    end
    local hour = math.floor(tonumber(r['last'] or r['created']) / 3600)
    local recent = {}
    for h = hour - 1, hour do
      local counts = redis.call('HGETALL', base .. ':cm:' .. root .. ':' .. h)
      local pop = redis.call('HGETALL', base .. ':pop:' .. h)
      recent[#recent + 1] = {h, counts, pop}
    end
    local last = tonumber(r['last'] or r['created'])
    local active = redis.call('ZCOUNT', mem(root), last - churn, '+inf')
    out[#out + 1] = {root, f, new, listing, recent, active}
  end
end
local srcs = {}
for ev, _ in pairs(sources) do
  local f = redis.call('HGETALL', base .. ':src:' .. ev)
  local accounts = redis.call('PFCOUNT', base .. ':sa:' .. ev)
  local campaign_accounts = redis.call('PFCOUNT', base .. ':sc:' .. ev)
  srcs[#srcs + 1] = {ev, f, accounts, campaign_accounts}
end
return {out, srcs, redis.call('HGETALL', base .. ':models')}
