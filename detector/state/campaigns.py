"""Campaigns in shared Redis state: evidence indices and a union-find over accounts and evidence.

Every key lives under one hash tag (``cmp:{c}``), so one Lua call per batch updates the
indices and the campaigns atomically, on a single Redis or on Redis Cluster, and two
workers consuming different partitions build one campaign together.

Nodes of the union-find are accounts (``a:<id>``) and evidence values (``e:<kind>:<value>``).
An evidence value joins the graph once ``min_suspects`` suspect accounts share it; a
suspect account then joins every campaign its evidence belongs to, and accounts that share
a strong kind (billing or client fingerprint) with a campaign are attributed to it even
when their own traffic is unremarkable. A merged campaign keeps the older campaign's id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from detector.config import CampaignSettings
from detector.errors import ServiceUnavailable
from detector.metrics import Metrics
from detector.state.store import REDIS_DOWN, sha1

STRONG_KINDS = ("bill", "cfp")

_LINK_LUA = """
local base = KEYS[1]
local K, cap, ttl, listed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local growth = tonumber(ARGV[5])
local uf = base .. ':uf'
local touched, fresh = {}, {}

local function rec(root) return base .. ':c:' .. root end
local function mem(root) return base .. ':m:' .. root end

local function find(x)
  local root = x
  local p = redis.call('HGET', uf, root)
  while p and p ~= root do root = p; p = redis.call('HGET', uf, root) end
  local cur = x
  while cur ~= root do
    local nxt = redis.call('HGET', uf, cur)
    redis.call('HSET', uf, cur, root)
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
  local kinds = redis.call('HGET', rec(root), 'kinds') or ''
  if not string.find(',' .. kinds .. ',', ',' .. kind .. ',', 1, true) then
    redis.call('HSET', rec(root), 'kinds', kinds == '' and kind or (kinds .. ',' .. kind))
  end
end

-- Join an account node to an evidence node; returns nothing, records what changed.
local function join(account, enode, kind, ts)
  local anode = 'a:' .. account
  local was_member = redis.call('HEXISTS', uf, anode) == 1
  local ra, re = find(anode), find(enode)
  if ra == re then add_kind(re, kind); return end
  local winner, loser = re, ra
  if older(ra, re) then winner, loser = ra, re end
  if redis.call('EXISTS', rec(winner)) == 0 then
    redis.call('HSET', rec(winner), 'created', ts, 'n', 0, 'alerted', 0)
  end
  redis.call('HSET', uf, loser, winner)
  redis.call('HSET', uf, winner, winner)
  if redis.call('EXISTS', rec(loser)) == 1 then
    local l = redis.call('HGETALL', rec(loser))
    local lf = {}
    for i = 1, #l, 2 do lf[l[i]] = l[i + 1] end
    redis.call('HINCRBY', rec(winner), 'n', tonumber(lf['n'] or 0))
    redis.call('HINCRBY', rec(winner), 'events', tonumber(lf['events'] or 0))
    for k in string.gmatch(lf['kinds'] or '', '[^,]+') do add_kind(winner, k) end
    redis.call('ZUNIONSTORE', mem(winner), 2, mem(winner), mem(loser), 'AGGREGATE', 'MIN')
    redis.call('DEL', rec(loser), mem(loser))
    touched[loser] = nil
  end
  if not was_member then
    redis.call('HINCRBY', rec(winner), 'n', 1)
    redis.call('ZADD', mem(winner), ts, account)
    fresh[#fresh + 1] = {winner, account}
  end
  add_kind(winner, kind)
  redis.call('ZREMRANGEBYRANK', mem(winner), 0, -(listed + 1))
  touched[winner] = true
end

local i = 6
while i <= #ARGV do
  local account, ts, suspect, events, n = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2] == '1', tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  for j = i + 5, i + 4 + n do
    local ev = ARGV[j]
    local kind = string.match(ev, '^([^:]+)')
    local strong = kind == 'bill' or kind == 'cfp'
    local enode = 'e:' .. ev
    if suspect then
      local ix = base .. ':ix:' .. ev
      redis.call('ZADD', ix, ts, account)
      redis.call('ZREMRANGEBYRANK', ix, 0, -(cap + 1))
      redis.call('EXPIRE', ix, ttl)
      if redis.call('ZCARD', ix) >= K then
        local members = {account}
        if redis.call('HEXISTS', uf, enode) == 0 then members = redis.call('ZRANGE', ix, 0, -1) end
        for _, m in ipairs(members) do join(m, enode, kind, ts) end
        if strong then
          for _, m in ipairs(redis.call('ZRANGE', base .. ':ax:' .. ev, 0, -1)) do join(m, enode, kind, ts) end
        end
      end
    end
    if strong then
      local ax = base .. ':ax:' .. ev
      redis.call('ZADD', ax, ts, account)
      redis.call('ZREMRANGEBYRANK', ax, 0, -(cap + 1))
      redis.call('EXPIRE', ax, ttl)
      if not suspect and redis.call('HEXISTS', uf, enode) == 1 then join(account, enode, kind, ts) end
    end
  end
  local anode = 'a:' .. account
  if redis.call('HEXISTS', uf, anode) == 1 then
    local root = find(anode)
    if redis.call('EXISTS', rec(root)) == 1 then
      redis.call('HINCRBY', rec(root), 'events', events)
      redis.call('HSET', rec(root), 'last', ts)
      touched[root] = true
    end
  end
  i = i + 5 + n
end
redis.call('EXPIRE', uf, ttl)

local out = {}
for root, _ in pairs(touched) do
  if redis.call('EXISTS', rec(root)) == 1 then
    redis.call('EXPIRE', rec(root), ttl)
    redis.call('EXPIRE', mem(root), ttl)
    local f = redis.call('HGETALL', rec(root))
    local new = {}
    for _, pair in ipairs(fresh) do if find(pair[1]) == root then new[#new + 1] = pair[2] end end
    local r = {}
    for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
    local n, alerted = tonumber(r['n'] or 0), tonumber(r['alerted'] or 0)
    local listing = {}
    if n >= K and (alerted == 0 or n >= alerted * growth) then
      listing = redis.call('ZREVRANGE', mem(root), 0, listed - 1)
    end
    out[#out + 1] = {root, f, new, listing}
  end
end
return out
"""


@dataclass(frozen=True)
class AccountLinks:
    """What one account of the batch brings to the campaign graph."""

    account_id: str
    ts: float
    suspect: bool
    events: int
    evidence: tuple[str, ...]


@dataclass
class CampaignState:
    root: str
    created: float
    last: float
    members: int
    alerted: int
    events: int
    kinds: tuple[str, ...]
    new_members: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)  # filled when the change is material

    @property
    def campaign_id(self) -> str:
        return "cmp-" + sha1(self.root)[:12]


class CampaignStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        settings: CampaignSettings,
        max_listed: int,
        metrics: Metrics,
    ) -> None:
        self._client = client
        self._max_listed = max_listed
        self._base = f"{prefix}cmp:{{c}}"
        self._settings = settings
        self._metrics = metrics
        self._sha = sha1(_LINK_LUA)

    def link(self, batch: list[AccountLinks]) -> list[CampaignState]:
        """One round trip: index the batch's evidence, grow campaigns, report touched ones."""
        if not batch:
            return []
        s = self._settings
        args: list[Any] = [s.min_suspects, s.index_cap, s.ttl_s, self._max_listed, s.realert_growth]
        for a in batch:
            args += [
                a.account_id,
                a.ts,
                "1" if a.suspect else "0",
                a.events,
                len(a.evidence),
                *a.evidence,
            ]
        started = time.perf_counter()
        try:
            try:
                reply = self._client.evalsha(self._sha, 1, self._base, *args)
            except redis.exceptions.NoScriptError:
                self._client.script_load(_LINK_LUA)
                reply = self._client.evalsha(self._sha, 1, self._base, *args)
        except REDIS_DOWN as exc:
            raise ServiceUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        finally:
            self._metrics.redis_seconds.labels("link").observe(time.perf_counter() - started)
        return [self._state(root, flat, new, listed) for root, flat, new, listed in reply]

    def mark_alerted(self, campaign: CampaignState) -> tuple[str, ...]:
        """The command that records an alert for ``campaign``; run with the batch's state write."""
        return ("HSET", f"{self._base}:c:{campaign.root}", "alerted", campaign.members)

    @staticmethod
    def _state(root: str, flat: list[str], new: list[str], listed: list[str]) -> CampaignState:
        f = dict(zip(flat[::2], flat[1::2], strict=True))
        return CampaignState(
            root=root,
            created=float(f.get("created", 0)),
            last=float(f.get("last", f.get("created", 0))),
            members=int(f.get("n", 0)),
            alerted=int(f.get("alerted", 0)),
            events=int(f.get("events", 0)),
            kinds=tuple(sorted(filter(None, f.get("kinds", "").split(",")))),
            new_members=list(new),
            listed=list(listed),
        )
