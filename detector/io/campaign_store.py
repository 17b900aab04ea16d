"""Campaigns in shared Redis state: evidence indices and a union-find over accounts and evidence.

Every key lives under one hash tag (``cmp:{c}``), so one Lua call per batch updates the
indices and the campaigns atomically, on a single Redis or on Redis Cluster, and two
workers consuming different partitions build one campaign together.

Origins (``range``: IPv4 /16 or IPv6 /32, and ``asnua``: ASN with user agent) also
count their traffic mix, for source alerts; ``range`` is too wide to link accounts.

Nodes of the union-find are accounts (``a:<id>``) and evidence values (``e:<kind>:<value>``).
An evidence value joins the graph once ``min_suspects`` suspect accounts share it; a
suspect account then joins every campaign its evidence belongs to, and accounts that share
a strong kind (billing or client fingerprint) with a campaign are attributed to it even
when their own traffic is unremarkable. A merged campaign keeps the older campaign's id.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import orjson
import redis

from detector.config import CampaignSettings
from detector.io.roundtrip import Pending, RoundTrip, sha1
from detector.io.scripts import script
from detector.metrics import Metrics
from detector.state.campaigns import AccountLinks, CampaignState, LinkResult, SourceMix

STRONG_KINDS = ("bill", "cfp")
# Evidence whose traffic mix is counted, for source alerts (the link script's traffic pass).
ORIGIN_PREFIXES = ("range:", "asnua:")
# Evidence values whose indexing a worker remembers per account (``index_refresh_s``): enough
# for an account's values to rotate through a small pool, at ~250 B each.
REMEMBERED_VALUES = 32

_LINK_LUA: Final = script("campaign_link")


def link_watermarks(reply: list[Any] | dict[Any, Any]) -> dict[str, int]:
    """``topic|partition`` -> last offset whose traffic the campaign counts include."""
    pairs = reply.items() if isinstance(reply, dict) else _pairs(reply)
    return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in pairs}


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}|{partition}"


class CampaignStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        settings: CampaignSettings,
        max_listed: int,
        metrics: Metrics,
        remember_accounts: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_listed = max_listed
        self._base = f"{prefix}cmp:{{c}}"
        self._settings = settings
        self._metrics = metrics
        self._sha = sha1(_LINK_LUA)
        # Per account (least recently linked out past ``remember_accounts``), for the values it
        # indexed last: when this worker indexed them, in event time and by ``clock``, and
        # whether as a suspect's (``_split_indexed``).
        self._indexed: OrderedDict[str, dict[str, tuple[float, float, bool]]] = OrderedDict()
        self._remember = remember_accounts if settings.index_refresh_s > 0 else 0
        self._clock = clock

    def watermarks_command(self) -> tuple[Any, ...]:
        """The command that reads how far each partition's traffic is counted (``link_watermarks``)."""
        return ("HGETALL", f"{self._base}:lwm")

    def link(
        self, batch: list[AccountLinks], linked_through: dict[str, int] | None = None
    ) -> LinkResult:
        """One round trip: index the batch's evidence, grow campaigns, report touched ones.

        ``linked_through`` maps ``topic|partition`` to the batch's last offset there: the
        traffic counts of ``batch`` must hold only events past the offsets stored before.
        """
        return self.send_link(batch, linked_through).result()

    def send_link(
        self, batch: list[AccountLinks], linked_through: dict[str, int] | None = None
    ) -> Pending[LinkResult]:
        """``link``, sent now; its result is read when asked for."""
        s = self._settings
        now = self._clock()
        accounts, indexing = [], []  # indexing: per account, the values it indexes now
        for a in batch:
            index, recent = self._split_indexed(a, now)
            indexing.append(index)
            accounts.append(
                {
                    "id": a.account_id,
                    "ts": a.ts,
                    "suspect": a.suspect,
                    "events": a.events,
                    "capability": a.capability,
                    "index": index,
                    "recent": recent,
                    "models": dict(a.models),
                }
            )
        # The script's argument, a named record: campaign_link.lua says what each field is for.
        record = {
            "settings": {
                "min_suspects": s.min_suspects,
                "index_cap": s.index_cap,
                "ttl_s": s.ttl_s,
                "listed": self._max_listed,
                "realert_growth": s.realert_growth,
                "singleton_ttl_s": s.singleton_ttl_s,
                "churn_window_s": s.churn_window_s,
            },
            "watermarks": linked_through or {},
            "accounts": accounts,
        }
        commands = [("EVALSHA", self._sha, 1, self._base, orjson.dumps(record))] if batch else []
        observe = self._metrics.redis_seconds.labels("link").observe
        trip = RoundTrip(self._client, commands, (_LINK_LUA,), observe)
        # A bound method in a partial, not a closure: compiled by mypyc, a closure and its
        # environment refer to each other, and each batch's links waited for a full collection.
        return Pending(trip, partial(self._linked, batch, indexing, now))

    def _linked(
        self, batch: list[AccountLinks], indexing: list[list[str]], now: float, replies: list[Any]
    ) -> LinkResult:
        """The link script's reply as campaigns, sources and models' first sightings."""
        if not replies:
            return LinkResult([], [], {})
        reply = orjson.loads(replies[0])
        self._remember_indexed(batch, indexing, now)
        churn_window_s = self._settings.churn_window_s
        return LinkResult(
            [_campaign(c, churn_window_s) for c in _list(reply["campaigns"])],
            [_source(o) for o in _list(reply["sources"])],
            {m: float(ts) for m, ts in reply["models"].items()},
        )

    def _split_indexed(self, a: AccountLinks, now: float) -> tuple[list[str], list[str]]:
        """The account's evidence to index now, and the origins this worker indexed for it
        lately (within ``index_refresh_s`` of event time or of ``now``), sent for their
        traffic only. Other values indexed lately are left out. A suspect's value indexed
        while the account was not a suspect is indexed again: a suspect's indexing does more
        (and all that).

        Both clocks must have moved on: entries expire by the wall clock, and a backlog or a
        replay runs through hours of event time in minutes (re-indexing its accounts at
        nearly every appearance had been most of the link script's work on such traffic)."""
        since, refresh = self._indexed.get(a.account_id, {}), self._settings.index_refresh_s
        stale_ts, stale_at = a.ts - refresh, now - refresh
        index, recent = [], []
        for ev in a.evidence:
            at = since.get(ev)  # (event time, clock time, as a suspect's)
            if at is None or (at[0] <= stale_ts and at[1] <= stale_at) or (a.suspect and not at[2]):
                index.append(ev)
            elif ev.startswith(ORIGIN_PREFIXES):
                recent.append(ev)
        return index, recent

    def _remember_indexed(
        self, batch: list[AccountLinks], indexing: list[list[str]], now: float
    ) -> None:
        """After a link call succeeded: when each account's evidence was last indexed, for
        the ``REMEMBERED_VALUES`` values it indexed last (``indexing``: what the call did)."""
        if not self._remember:
            return
        indexed = self._indexed
        for a, values in zip(batch, indexing, strict=True):
            since = indexed.get(a.account_id, {})  # a marked value keeps when it was indexed
            for ev in values:
                since.pop(ev, None)  # re-inserted last: the dict stays in indexing order
                since[ev] = (a.ts, now, a.suspect)
            excess = len(since) - REMEMBERED_VALUES
            for ev in list(itertools.islice(since, max(0, excess))):
                del since[ev]
            indexed[a.account_id] = since
            indexed.move_to_end(a.account_id)
        while len(indexed) > self._remember:
            indexed.popitem(last=False)

    def announced_command(self, campaign: CampaignState, accounts: list[str]) -> tuple[Any, ...]:
        """The command that records the member alerts of ``accounts`` as published."""
        return ("SREM", f"{self._base}:p:{campaign.root}", *accounts)

    def alerted_command(self, campaign: CampaignState) -> tuple[Any, ...]:
        """The command that records an alert for ``campaign``; run with the batch's state write."""
        return ("HSET", f"{self._base}:c:{campaign.root}", "alerted", campaign.members)

    def pivot_alerted_command(self, campaign: CampaignState, model: str) -> tuple[Any, ...]:
        return ("HSET", f"{self._base}:c:{campaign.root}", f"pivot:{model}", 1)

    def source_alerted_command(self, source: SourceMix, ts: float) -> tuple[Any, ...]:
        key = f"{self._base}:src:{source.evidence}"
        return ("HSET", key, "alerted", repr(source.request_share), "alerted_ts", repr(ts))


def _list(value: list[Any] | dict[str, Any]) -> list[Any]:
    """A list from the script's reply: Lua has one table type, and an empty one comes as ``{}``."""
    return value if isinstance(value, list) else []


def _source(report: dict[str, Any]) -> SourceMix:
    record: dict[str, str] = report["record"]
    return SourceMix(
        evidence=report["evidence"],
        requests=int(record.get("requests", 0)),
        campaign_requests=int(record.get("campaign_requests", 0)),
        accounts=int(report["accounts"]),
        campaign_accounts=int(report["campaign_accounts"]),
        campaign_root=record.get("campaign", ""),
        alerted_share=float(record.get("alerted", 0.0)),
        alerted_ts=float(record.get("alerted_ts", 0.0)),
    )


def _campaign(report: dict[str, Any], churn_window_s: float) -> CampaignState:
    record: dict[str, str] = report["record"]
    models: dict[str, int] = {}
    population: dict[str, int] = {}
    for hour in _list(report["hours"]):
        for model, n in hour["campaign"].items():
            models[model] = models.get(model, 0) + int(n)
        for model, n in hour["population"].items():
            population[model] = population.get(model, 0) + int(n)
    return CampaignState(
        root=report["root"],
        created=float(record.get("created", 0)),
        last=float(record["last"] if "last" in record else record.get("created", 0)),
        members=int(record.get("n", 0)),
        alerted=int(record.get("alerted", 0)),
        events=int(record.get("events", 0)),
        kinds=tuple(sorted(filter(None, record.get("kinds", "").split(",")))),
        # Sorted: a Redis set comes back in an order that differs from server to server,
        # and member alerts go out in this order.
        new_members=sorted(_list(report["new"])),
        listed=_list(report["listed"]),
        pivoted=frozenset(k.split(":", 1)[1] for k in record if k.startswith("pivot:")),
        models=models,
        population_models=population,
        capabilities={k[4:]: int(v) for k, v in record.items() if k.startswith("cap:")},
        joined_recently=_joined_within(record, churn_window_s),
        active_recently=int(report["active"]),
    )


def _joined_within(record: dict[str, str], window_s: float) -> int:
    """Members that joined in the event-time hours covering ``window_s`` before the campaign's last event."""
    last_hour = int(float(record.get("last", record.get("created", 0))) // 3600)
    hours = range(last_hour - max(1, int(window_s // 3600)) + 1, last_hour + 1)
    return sum(int(record.get(f"joined:{h}", 0)) for h in hours)


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))
