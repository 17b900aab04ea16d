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
        # whether as a suspect's (``_marked``).
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
        linked_through = linked_through or {}
        args: list[Any] = [
            s.min_suspects,
            s.index_cap,
            s.ttl_s,
            self._max_listed,
            s.realert_growth,
            s.singleton_ttl_s,
            s.churn_window_s,
            len(linked_through),
        ]
        for where, offset in linked_through.items():
            args += (where, offset)
        indexing: list[list[str]] = []  # per account, the values it indexes now
        now = self._clock()
        for a in batch:
            evidence, indexed = self._marked(a, now)
            indexing.append(indexed)
            args += [
                a.account_id,
                a.ts,
                "1" if a.suspect else "0",
                a.events,
                a.capability,
                len(evidence),
                *evidence,
                len(a.models),
            ]
            for model, count in a.models:
                args += (model, count)
        commands = [("EVALSHA", self._sha, 1, self._base, *args)] if batch else []
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
        campaigns, sources, models = replies[0]
        self._remember_indexed(batch, indexing, now)
        churn_window_s = self._settings.churn_window_s
        return LinkResult(
            [self._state(*c, churn_window_s) for c in campaigns],  # type: ignore[call-arg]
            [self._source(*m) for m in sources],
            {m: float(ts) for m, ts in _pairs(models)},
        )

    def _marked(self, a: AccountLinks, now: float) -> tuple[list[str], list[str]]:
        """The account's evidence to send, each value this worker indexed for it within
        ``index_refresh_s`` of event time or of ``now`` marked ``~``: traffic only. Such a
        value goes only if it is an origin, whose traffic the script counts. Also the values
        the call indexes now (the unmarked ones). A suspect's value indexed while the account
        was not a suspect is indexed again: a suspect's indexing does more (and all that).

        Both clocks must have moved on: entries expire by the wall clock, and a backlog or a
        replay runs through hours of event time in minutes (re-indexing its accounts at
        nearly every appearance had been most of the link script's work on such traffic)."""
        since, refresh = self._indexed.get(a.account_id, {}), self._settings.index_refresh_s
        stale_ts, stale_at = a.ts - refresh, now - refresh
        send, indexed = [], []
        for ev in a.evidence:
            at = since.get(ev)  # (event time, clock time, as a suspect's)
            if at is None or (at[0] <= stale_ts and at[1] <= stale_at) or (a.suspect and not at[2]):
                send.append(ev)
                indexed.append(ev)
            elif ev.startswith(ORIGIN_PREFIXES):
                send.append(f"~{ev}")
        return send, indexed

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

    def mark_announced(self, campaign: CampaignState, accounts: list[str]) -> tuple[Any, ...]:
        """The command that records the member alerts of ``accounts`` as published."""
        return ("SREM", f"{self._base}:p:{campaign.root}", *accounts)

    def mark_alerted(self, campaign: CampaignState) -> tuple[Any, ...]:
        """The command that records an alert for ``campaign``; run with the batch's state write."""
        return ("HSET", f"{self._base}:c:{campaign.root}", "alerted", campaign.members)

    def mark_pivot(self, campaign: CampaignState, model: str) -> tuple[Any, ...]:
        return ("HSET", f"{self._base}:c:{campaign.root}", f"pivot:{model}", 1)

    def mark_source(self, source: SourceMix, ts: float) -> tuple[Any, ...]:
        key = f"{self._base}:src:{source.evidence}"
        return ("HSET", key, "alerted", repr(source.request_share), "alerted_ts", repr(ts))

    @staticmethod
    def _source(evidence: str, flat: list[str], accounts: int, campaign_accounts: int) -> SourceMix:
        f = dict(_pairs(flat))
        return SourceMix(
            evidence=evidence,
            requests=int(f.get("requests", 0)),
            campaign_requests=int(f.get("campaign_requests", 0)),
            accounts=int(accounts),
            campaign_accounts=int(campaign_accounts),
            campaign_root=f.get("campaign", ""),
            alerted_share=float(f.get("alerted", 0.0)),
            alerted_ts=float(f.get("alerted_ts", 0.0)),
        )

    @staticmethod
    def _state(
        root: str,
        flat: list[str],
        new: list[str],
        listed: list[str],
        recent: list[Any],
        active: int,
        churn_window_s: float,
    ) -> CampaignState:
        f = dict(_pairs(flat))
        models: dict[str, int] = {}
        population: dict[str, int] = {}
        for _hour, counts, pop in recent:
            for model, n in _pairs(counts):
                models[model] = models.get(model, 0) + int(n)
            for model, n in _pairs(pop):
                population[model] = population.get(model, 0) + int(n)
        return CampaignState(
            root=root,
            created=float(f.get("created", 0)),
            last=float(f["last"] if "last" in f else f.get("created", 0)),
            members=int(f.get("n", 0)),
            alerted=int(f.get("alerted", 0)),
            events=int(f.get("events", 0)),
            kinds=tuple(sorted(filter(None, f.get("kinds", "").split(",")))),
            # Sorted: a Redis set comes back in an order that differs from server to server,
            # and member alerts go out in this order.
            new_members=sorted(new),
            listed=list(listed),
            pivoted=frozenset(k.split(":", 1)[1] for k in f if k.startswith("pivot:")),
            models=models,
            population_models=population,
            capabilities={k[4:]: int(v) for k, v in f.items() if k.startswith("cap:")},
            joined_recently=_joined_within(f, churn_window_s),
            active_recently=int(active),
        )


def _joined_within(record: dict[str, str], window_s: float) -> int:
    """Members that joined in the event-time hours covering ``window_s`` before the campaign's last event."""
    last_hour = int(float(record.get("last", record.get("created", 0))) // 3600)
    hours = range(last_hour - max(1, int(window_s // 3600)) + 1, last_hour + 1)
    return sum(int(record.get(f"joined:{h}", 0)) for h in hours)


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))
