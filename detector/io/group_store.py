"""The group stage's Redis state (``detector.campaigns``): value shards and group shards, two round trips per batch.

Keys live under fixed logical shards, each a hash tag (``{cv07}``, ``{cg11}``), so one Redis
and a Redis Cluster run the same scripts on the same keys, and the stage's work spreads over
``value_shards + group_shards`` slots instead of one. Every script call touches one shard.

- ``send_index``: per value shard, index the accounts' evidence values and report each
  value's holders count, owning group and (for seeding) its holders' summaries; plus the
  active-account count and when each model was first seen (``{cpop}``).
- ``send_update``: per group shard, create new groups, admit accounts that cover a profile,
  refresh members' facts; plus owner registrations on the value shards.

Values travel as ``"kind:value"`` strings; summaries as JSON lists of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import orjson
import redis
import xxhash

from detector.config import CampaignSettings
from detector.io.roundtrip import Pending, RoundTrip, sha1
from detector.io.scripts import script
from detector.metrics import Metrics

_INDEX_LUA: Final = script("value_index")
_UPDATE_LUA: Final = script("group_update")
DAY_S: Final = 86400


@dataclass(frozen=True)
class ValueStat:
    df: int  # accounts holding the value within the window (capped)
    owner: str  # the group the value belongs to, "" if none
    # Holders' summaries ({"v": values, "f": facts}), when a group may be seeded from the value.
    seeds: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class IndexReply:
    values: dict[str, ValueStat]
    active: int  # accounts active today and yesterday (HyperLogLog)
    model_first_seen: dict[str, float]


@dataclass(frozen=True)
class GroupReport:
    """A touched group as its shard reported it."""

    group: str
    record: dict[str, str]
    members: int
    joined: list[str]
    pending: list[str]
    models: dict[str, int]  # member requests per model, this and the previous hour
    latest: float
    # Every member's facts, and its values as a seventh element, when judgement is due.
    table: dict[str, list[Any]] | None = None
    profile: dict[str, float] | None = None  # ... and the profile: value -> weight
    models_now: dict[str, int] = field(default_factory=dict)  # ... of this hour alone


@dataclass(frozen=True)
class MemberUpdate:
    group: str
    account: str
    values: list[str]
    facts: list[float]  # first, last, created, events, harvest, at_limit, output
    models: dict[str, int] = field(default_factory=dict)


def _tag(kind: str, n: int) -> str:
    return f"{kind}{n:02d}"


class GroupStore:
    def __init__(
        self, client: redis.Redis, prefix: str, settings: CampaignSettings, metrics: Metrics
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._s = settings.groups
        self._ttl_s = settings.ttl_s
        self._metrics = metrics
        self._index_sha, self._update_sha = sha1(_INDEX_LUA), sha1(_UPDATE_LUA)
        self._pop = f"{prefix}cpop:{{cpop}}"

    def value_shard(self, value: str) -> str:
        n = xxhash.xxh32_intdigest(value.encode("utf-8")) % self._s.value_shards
        return f"{self._prefix}cv:{{{_tag('cv', n)}}}"

    def group_shard(self, group: str) -> str:
        n = xxhash.xxh32_intdigest(group.encode("utf-8")) % self._s.group_shards
        return f"{self._prefix}cg:{{{_tag('cg', n)}}}"

    def send_index(
        self,
        index: Iterable[tuple[str, str, float, str]],
        report: Iterable[str],
        accounts: list[str],
        models: Mapping[str, float],
        ts: float,
    ) -> Pending[IndexReply]:
        """``index``: (value, account, ts, summary) to add; ``report``: values to report on;
        ``accounts``: the batch's accounts (active today); ``models``: the batch's models with
        their first request time in it."""
        s = self._s
        settings = {
            "window_s": s.window_s,
            "cap": s.cap,
            "min_members": s.min_members,
            "seed_growth": s.seed_growth,
            "seed_holders": s.seed_holders,
            "ttl_s": self._ttl_s,
        }
        by_shard: dict[str, tuple[list[Any], list[str]]] = defaultdict(lambda: ([], []))
        for entry in index:
            by_shard[self.value_shard(entry[0])][0].append(entry)
        for value in report:
            by_shard[self.value_shard(value)][1].append(value)
        shards = sorted(by_shard)
        commands = _calls(
            self._index_sha,
            settings,
            {s: {"index": i, "report": r} for s, (i, r) in by_shard.items()},
        )
        day = int(ts // DAY_S)
        today, yesterday = f"{self._pop}:active:{day}", f"{self._pop}:active:{day - 1}"
        first = f"{self._pop}:first"
        if accounts:
            commands.append(("PFADD", today, *accounts))
            commands.append(("EXPIRE", today, 3 * DAY_S))
        counted = len(commands)
        commands.append(("PFCOUNT", today, yesterday))
        for model, at in models.items():
            commands.append(("HSETNX", first, model, at))
        commands.append(("HGETALL", first))
        observe = self._metrics.redis_seconds.labels("group_index").observe
        trip = RoundTrip(self._client, commands, (_INDEX_LUA,), observe)
        return Pending(trip, partial(_index_reply, len(shards), counted))

    def send_update(
        self,
        create: Iterable[tuple[str, dict[str, float], float]],
        members: Iterable[MemberUpdate],
    ) -> Pending[list[GroupReport]]:
        s = self._s
        settings = {
            "rho": s.rho,
            "ttl_s": self._ttl_s,
            "judge_growth": s.judge_growth,
            "judge_every_s": s.judge_every_s,
            "hour_s": 3600,
        }
        by_shard: dict[str, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
        owners: list[tuple[Any, ...]] = []
        for group, profile, ts in create:
            by_shard[self.group_shard(group)][0].append([group, profile, ts])
            for value in sorted(profile):
                owners.append(("HSETNX", f"{self.value_shard(value)}:o", value, group))
        for m in members:
            by_shard[self.group_shard(m.group)][1].append(
                [m.group, m.account, m.values, m.facts, m.models or {}]
            )
        shards = sorted(by_shard)
        commands = _calls(
            self._update_sha,
            settings,
            {s: {"create": c, "members": m} for s, (c, m) in by_shard.items()},
        )
        commands += owners
        observe = self._metrics.redis_seconds.labels("group_update").observe
        trip = RoundTrip(self._client, commands, (_UPDATE_LUA,), observe)
        return Pending(trip, partial(_update_reply, len(shards)))

    def verdict_command(
        self,
        group: str,
        severity: str,
        score: float,
        held: tuple[str, ...],
        reasons: tuple[str, ...],
    ) -> tuple[Any, ...]:
        """Records the group's verdict, for batches in which it is not judged again."""
        return (
            "HSET",
            f"{self.group_shard(group)}:g:{group}",
            "severity",
            severity,
            "score",
            score,
            "held",
            orjson.dumps(list(held)),
            "reasons",
            orjson.dumps(list(reasons)),
        )

    def profile_commands(self, group: str, profile: Mapping[str, float]) -> list[tuple[Any, ...]]:
        """Replace a group's profile (re-formed from its members), and claim its new values."""
        key = f"{self.group_shard(group)}:p:{group}"
        flat = [x for v in sorted(profile) for x in (v, round(profile[v], 4))]
        claims = [("HSETNX", f"{self.value_shard(v)}:o", v, group) for v in sorted(profile)]
        return [("DEL", key), ("HSET", key, *flat), ("EXPIRE", key, self._ttl_s), *claims]

    def alerted_command(
        self, group: str, members: int, severity: str, campaign: str, campaign_ts: float
    ) -> tuple[Any, ...]:
        """What the group's last campaign alert said: its size, severity and campaign (the
        campaign's id and creation time, read back by every worker: ``linking.Campaigns``)."""
        return (
            "HSET",
            f"{self.group_shard(group)}:g:{group}",
            "alerted_n",
            members,
            "alerted_severity",
            severity,
            "campaign",
            campaign,
            "campaign_ts",
            campaign_ts,
        )

    def announced_command(self, group: str, accounts: list[str]) -> tuple[Any, ...]:
        return ("SREM", f"{self.group_shard(group)}:n:{group}", *accounts)

    def pivoted_command(self, group: str, models: list[str]) -> tuple[Any, ...]:
        return ("HSET", f"{self.group_shard(group)}:g:{group}", "pivoted", orjson.dumps(models))


def _calls(
    sha: str, settings: dict[str, Any], records: dict[str, dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """One script call per shard, in shard order, each with the settings and its record."""
    return [
        ("EVALSHA", sha, 1, shard, orjson.dumps({"settings": settings, **records[shard]}))
        for shard in sorted(records)
    ]


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _pairs(flat: list[Any] | dict[Any, Any]) -> dict[str, str]:
    """A hash as read: a flat list (RESP2, and from Lua) or a map (RESP3)."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []  # cjson encodes an empty Lua table as {}


def _index_reply(n_shards: int, counted: int, replies: list[Any]) -> IndexReply:
    values: dict[str, ValueStat] = {}
    for reply in replies[:n_shards]:
        for entry in _as_list(orjson.loads(reply)):
            seeds = None
            if "seeds" in entry:
                flat = _as_list(entry["seeds"])
                seeds = {flat[i]: orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
            values[entry["v"]] = ValueStat(int(entry["df"]), entry["owner"], seeds)
    first = _pairs(replies[-1])
    return IndexReply(values, int(replies[counted]), {m: float(t) for m, t in first.items()})


def _update_reply(n_shards: int, replies: list[Any]) -> list[GroupReport]:
    out = []
    for reply in replies[:n_shards]:
        for e in _as_list(orjson.loads(reply)):
            models: dict[str, int] = defaultdict(int)
            hours = _as_list(e["models"])  # the group's newest hour first, then the one before
            for flat in hours:
                for model, n in _pairs(_as_list(flat)).items():
                    models[model] += int(n)
            now = {m: int(n) for m, n in _pairs(_as_list(hours[0])).items()} if hours else {}
            table = None
            if "members" in e:
                flat = _as_list(e["members"])
                table = {flat[i]: orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
            out.append(
                GroupReport(
                    e["g"],
                    {k: _text(v) for k, v in e["record"].items()},
                    int(e["n"]),
                    _as_list(e["joined"]),
                    _as_list(e["pending"]),
                    dict(models),
                    float(e["latest"]),
                    table,
                    {v: float(w) for v, w in _pairs(e["profile"]).items()}
                    if "profile" in e
                    else None,
                    now,
                )
            )
    return out
