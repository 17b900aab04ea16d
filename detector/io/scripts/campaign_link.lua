-- Campaign link: one call per batch indexes the batch's evidence, grows campaigns (a union-find
-- over accounts and evidence values) and reports the campaigns and origins it touched.
--
-- KEYS[1]: the key prefix every key of the campaign stage shares (one Redis Cluster hash slot).
-- ARGV[1]: the batch, a JSON record (io/campaign_store.py writes it):
--   settings    {min_suspects, index_cap, ttl_s, listed, realert_growth, singleton_ttl_s, churn_window_s}
--   watermarks  {"topic|partition": the batch's last offset there}
--   accounts    [{id, ts, suspect, events, capability,
--                 index   = evidence values to index now,
--                 recent  = origins this worker indexed for the account lately: traffic only,
--                 models  = {model: requests in the batch}}]
-- Reply: a JSON record {campaigns = [...], sources = [...], models = {model: first seen}}.
--
-- Phases, in order: advance_watermarks, link_accounts, count_traffic, write_counts, report.
-- Numbers travel as JSON numbers and reach Redis through redis.call, which prints them with
-- 17 significant digits: event times come back exactly as sent.

local base = KEYS[1]
local batch = cjson.decode(ARGV[1])
local s = batch.settings
local uf = base .. ':uf'

local function rec(root) return base .. ':c:' .. root end    -- a campaign's record
local function mem(root) return base .. ':m:' .. root end    -- its members, by last activity
-- Members whose own alert is not yet published: drained by the write after publishing, so a
-- crash in between announces them again (same alert ids) instead of losing them.
local function pend(root) return base .. ':p:' .. root end
local function kind_of(ev) return string.match(ev, '^([^:]+)') end
local function is_origin(kind) return kind == 'range' or kind == 'asnua' end

-- Caches for this call: the same accounts and values are looked up many times per batch.
local parents, kinds_of, expired = {}, {}, {}
-- What the phases leave for the report: campaigns touched, origins with campaign traffic.
local touched, sources = {}, {}

local function expire(key, seconds)
  if expired[key] ~= seconds then redis.call('EXPIRE', key, seconds); expired[key] = seconds end
end

local function fields(flat)
  local r = {}
  for k = 1, #flat, 2 do r[flat[k]] = flat[k + 1] end
  return r
end

local function sorted(list) table.sort(list); return list end

-- Commands with many arguments go in slices: Lua's unpack has a stack limit.
local function call_many(command, key, list)
  for i = 1, #list, 4000 do
    redis.call(command, key, unpack(list, i, math.min(i + 3999, #list)))
  end
end

------------------------------------------------------------------ advance_watermarks
-- How far each partition's traffic is counted: a batch processed again after a crash links its
-- accounts again (idempotent) but counts only events past these offsets.
local function advance_watermarks(watermarks)
  for where, offset in pairs(watermarks) do
    local prev = tonumber(redis.call('HGET', base .. ':lwm', where) or -1)
    if offset > prev then redis.call('HSET', base .. ':lwm', where, offset) end
  end
end

------------------------------------------------------------------ link_accounts
-- Add an account to an evidence index of at most ``index_cap`` accounts; returns how many it
-- holds. A value only one account has used lives briefly: most are one-offs (per-request
-- fingerprints, a user's own card), and they would otherwise fill Redis for the full TTL.
local function add_capped(key, ts, account)
  local added = redis.call('ZADD', key, ts, account)
  local card = redis.call('ZCARD', key)
  if added == 1 and card > s.index_cap then
    redis.call('ZREMRANGEBYRANK', key, 0, -(s.index_cap + 1))
    card = s.index_cap
  end
  expire(key, card > 1 and s.ttl_s or s.singleton_ttl_s)
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

-- A merged campaign keeps the older campaign's id.
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

local function absorb(winner, loser)
  local lf = fields(redis.call('HGETALL', rec(loser)))
  redis.call('HINCRBY', rec(winner), 'n', tonumber(lf['n'] or 0))
  redis.call('HINCRBY', rec(winner), 'events', tonumber(lf['events'] or 0))
  for k in string.gmatch(lf['kinds'] or '', '[^,]+') do add_kind(winner, k) end
  redis.call('ZUNIONSTORE', mem(winner), 2, mem(winner), mem(loser), 'AGGREGATE', 'MIN')
  redis.call('SUNIONSTORE', pend(winner), pend(winner), pend(loser))
  redis.call('DEL', rec(loser), mem(loser), pend(loser))
  kinds_of[loser] = nil
  touched[loser] = nil
end

-- Join an account node to an evidence node, merging their campaigns.
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
  if redis.call('EXISTS', rec(loser)) == 1 then absorb(winner, loser) end
  if not was_member then
    redis.call('HINCRBY', rec(winner), 'n', 1)
    redis.call('HINCRBY', rec(winner), 'joined:' .. math.floor(ts / 3600), 1)
    redis.call('ZADD', mem(winner), ts, account)
    redis.call('SADD', pend(winner), account)
  end
  add_kind(winner, kind)
  redis.call('ZREMRANGEBYRANK', mem(winner), 0, -(s.listed + 1))
  touched[winner] = true
end

-- Index one evidence value of an account and join what it links.
local function index(account, ev, ts, suspect)
  local kind = kind_of(ev)
  local strong = kind == 'bill' or kind == 'cfp'
  local enode = 'e:' .. ev
  if suspect and kind ~= 'range' then
    local ix = base .. ':ix:' .. ev
    if add_capped(ix, ts, account) >= s.min_suspects then
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
  -- A strong value (billing or client fingerprint) attributes even unremarkable accounts.
  if strong then
    add_capped(base .. ':ax:' .. ev, ts, account)
    if not suspect and parent(enode) ~= false then join(account, enode, kind, ts) end
  end
end

local function link_accounts(accounts)
  for _, a in ipairs(accounts) do
    for _, ev in ipairs(a.index) do index(a.id, ev, a.ts, a.suspect) end
  end
end

------------------------------------------------------------------ count_traffic
-- Once the batch is linked: traffic of members per model, and of every origin. Counts are
-- summed here and written once per key by write_counts: a call costs more than a table update.
local counts = {
  campaign = {},     -- root -> {events = n, ['cap:' .. capability] = n}
  last = {},         -- root -> the latest event time of its members in the batch
  activity = {},     -- root -> ZADD arguments: last activity, member
  first_seen = {},   -- model -> event time
  hourly = {},       -- key of an hour's requests per model -> {model = n}
  origin = {},       -- origin -> {requests = n, campaign_requests = n}
  origin_accounts = {},  -- HyperLogLog key -> accounts
  origin_campaign = {},  -- origin -> root
  origin_fresh = {},     -- origin -> true: indexed now, its keys need their TTL
}

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

-- The campaign an account belongs to now, if any.
local exists = {}
local function campaign_of(account)
  local anode = 'a:' .. account
  if parent(anode) == false then return nil end
  local root = find(anode)
  if exists[root] == nil then exists[root] = redis.call('EXISTS', rec(root)) == 1 end
  return exists[root] and root or nil
end

local function count_origin(a, ev, root, fresh)
  add(counts.origin, ev, 'requests', a.events)
  if fresh then
    push(counts.origin_accounts, base .. ':sa:' .. ev, a.id)
    counts.origin_fresh[ev] = true
  end
  if root then
    add(counts.origin, ev, 'campaign_requests', a.events)
    push(counts.origin_accounts, base .. ':sc:' .. ev, a.id)
    counts.origin_campaign[ev] = root
    sources[ev] = true
  end
end

local function count_traffic(accounts)
  for _, a in ipairs(accounts) do
    local root = campaign_of(a.id)
    if root then
      add(counts.campaign, root, 'events', a.events)
      counts.last[root] = a.ts
      if a.capability ~= '' then add(counts.campaign, root, 'cap:' .. a.capability, a.events) end
      push(counts.activity, root, a.ts)  -- scores are last activity: quiet members show
      push(counts.activity, root, a.id)
      touched[root] = true
    end
    -- Requests per model and event-time hour: the population's and the campaign's.
    local hour = math.floor(a.ts / 3600)
    for model, n in pairs(a.models) do
      if counts.first_seen[model] == nil then counts.first_seen[model] = a.ts end
      add(counts.hourly, base .. ':pop:' .. hour, model, n)
      if root then add(counts.hourly, base .. ':cm:' .. root .. ':' .. hour, model, n) end
    end
    -- An origin in ``recent`` was indexed for the account lately (within index_refresh_s, far
    -- under the TTL): the account is in its HyperLogLog already and the keys' TTLs were set
    -- then, so only its traffic counts.
    for _, ev in ipairs(a.index) do
      if is_origin(kind_of(ev)) then count_origin(a, ev, root, true) end
    end
    for _, ev in ipairs(a.recent) do count_origin(a, ev, root, false) end
  end
end

------------------------------------------------------------------ write_counts
local function write_counts()
  for model, ts in pairs(counts.first_seen) do redis.call('HSETNX', base .. ':models', model, ts) end
  for root, row in pairs(counts.campaign) do
    for field, n in pairs(row) do redis.call('HINCRBY', rec(root), field, n) end
    redis.call('HSET', rec(root), 'last', counts.last[root])
    call_many('ZADD', mem(root), counts.activity[root])
  end
  for key, row in pairs(counts.hourly) do
    for model, n in pairs(row) do redis.call('HINCRBY', key, model, n) end
    expire(key, 3 * 86400)
  end
  for ev, row in pairs(counts.origin) do
    local src = base .. ':src:' .. ev
    local fresh = counts.origin_fresh[ev]
    for field, n in pairs(row) do
      -- A count that is only this call's is a new key (or one Redis lost): it needs its TTL.
      if redis.call('HINCRBY', src, field, n) == n and field == 'requests' then fresh = true end
    end
    if counts.origin_campaign[ev] then redis.call('HSET', src, 'campaign', counts.origin_campaign[ev]) end
    if fresh then expire(src, s.ttl_s) end
  end
  for key, accounts in pairs(counts.origin_accounts) do
    call_many('PFADD', key, accounts)
    expire(key, s.ttl_s)
  end
  redis.call('EXPIRE', uf, s.ttl_s)
  redis.call('EXPIRE', base .. ':models', s.ttl_s)
  redis.call('EXPIRE', base .. ':lwm', s.ttl_s)
end

------------------------------------------------------------------ report
-- A touched campaign: its record, members not yet announced, the listing when the change is
-- material, requests per model in its last two event-time hours, members active lately.
local function campaign_report(root)
  redis.call('EXPIRE', rec(root), s.ttl_s)
  redis.call('EXPIRE', mem(root), s.ttl_s)
  redis.call('EXPIRE', pend(root), s.ttl_s)
  local record = fields(redis.call('HGETALL', rec(root)))
  local n, alerted = tonumber(record['n'] or 0), tonumber(record['alerted'] or 0)
  local listed = {}
  if n >= s.min_suspects and (alerted == 0 or n >= alerted * s.realert_growth) then
    listed = redis.call('ZREVRANGE', mem(root), 0, s.listed - 1)
  end
  local last = tonumber(record['last'] or record['created'])
  local hour = math.floor(last / 3600)
  local hours = {}
  for h = hour - 1, hour do
    hours[#hours + 1] = {
      campaign = fields(redis.call('HGETALL', base .. ':cm:' .. root .. ':' .. h)),
      population = fields(redis.call('HGETALL', base .. ':pop:' .. h)),
    }
  end
  return {
    root = root,
    record = record,
    new = redis.call('SMEMBERS', pend(root)),
    listed = listed,
    hours = hours,
    active = redis.call('ZCOUNT', mem(root), last - s.churn_window_s, '+inf'),
  }
end

local function source_report(ev)
  return {
    evidence = ev,
    record = fields(redis.call('HGETALL', base .. ':src:' .. ev)),
    accounts = redis.call('PFCOUNT', base .. ':sa:' .. ev),
    campaign_accounts = redis.call('PFCOUNT', base .. ':sc:' .. ev),
  }
end

local function report()
  local campaigns, origins = {}, {}
  for root, _ in pairs(touched) do
    if redis.call('EXISTS', rec(root)) == 1 then campaigns[#campaigns + 1] = campaign_report(root) end
  end
  for ev, _ in pairs(sources) do origins[#origins + 1] = source_report(ev) end
  return cjson.encode({
    campaigns = campaigns,
    sources = origins,
    models = fields(redis.call('HGETALL', base .. ':models')),
  })
end

advance_watermarks(batch.watermarks)
link_accounts(batch.accounts)
count_traffic(batch.accounts)
write_counts()
return report()
