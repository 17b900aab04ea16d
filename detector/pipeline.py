"""The spine: one batch goes decode -> load -> features -> state -> detectors -> link -> send.

``Pipeline.process`` reads as those stages. Two Redis round trips per batch: the first writes
the previous batch's state and loads this one's (``_load``), the second links campaigns
(``_link``). A batch's state is therefore written at the start of the next batch (or by
``flush`` when the stream pauses): until then it is a ``lifecycle.PendingBatch``, whose
docstring lists the steps from sent to committed. The records whose effects that write made
durable go to ``on_durable`` at once, so the caller commits them while this batch is still
being processed, and are listed again in the result. Each round trip is sent before work
that does not need its replies (features while the state loads, encoding the state's write
while campaigns link), so Redis works on the other core meanwhile.

Alerts are published before the state write, so a crash between the two re-sends the
same alerts (same ``alert_id``) rather than losing them. Campaign, member and source alerts
are recorded as sent in that same write, so a crash before it re-sends them too, and the
link counts a partition's events only once (link watermarks).

The shared models (``DetectorSuite``) learn in memory, event by event, as the batch is
processed: each event is scored by a model that learned every event before it, whatever the
batches. A batch that raises is processed again (retried after an outage, or split by
``detector.isolation``) and Redis gives back its states as they were, but the models cannot
unlearn: the events they learned in the try that failed are remembered, and processing them
again evaluates them without learning them twice (``LearnOnce``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import msgspec

from detector import alerting
from detector.campaigns.step import GroupStep
from detector.config import Settings
from detector.decode import decode_batch
from detector.detectors import Finding
from detector.detectors.campaign import evidence_of, judge, pivot, source
from detector.detectors.suite import DetectorSuite
from detector.events import Alert, DeadLetter, QueryEvent, RawRecord
from detector.features import EventFeatures, extract_batch, intent_model
from detector.io import AlertSink, DeadLetterSink
from detector.io.account_store import AccountStore, LoadedBatch
from detector.io.campaign_store import CampaignStore, link_watermarks, partition_key
from detector.io.roundtrip import Pending
from detector.lifecycle import PendingBatch, StateWrite
from detector.metrics import Metrics
from detector.state.account import AccountState, Snapshot, apply_event
from detector.state.campaigns import AccountLinks, LinkResult, campaign_id
from detector.state.profile import focus, lockstep_bands

T = TypeVar("T")
SUSPECT_TYPES: Final = frozenset({"capability_harvest", "reasoning_elicitation", "volume_spike"})
FLAG_RANK: Final = 1  # findings of severity medium or above keep the models from learning the point
Position = tuple[int, int]  # a record's partition and offset
EventKey = tuple[str, str]  # an event's account and event id, as a snapshot carries them


@dataclass
class BatchResult:
    durable: list[RawRecord] = field(default_factory=list)  # effects written: commit these
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0
    alerts: list[Alert] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def combined(self, later: BatchResult) -> BatchResult:
        """This result and a later one's, as one (a batch processed in parts)."""
        return BatchResult(
            self.durable + later.durable,
            self.consumed + later.consumed,
            self.applied + later.applied,
            self.duplicates + later.duplicates,
            self.late + later.late,
            self.invalid + later.invalid,
            self.alerts + later.alerts,
            self.conflicts + later.conflicts,
        )


class Learner(Protocol):
    def learn(self, snap: Snapshot, flagged: bool) -> None: ...


class LearnOnce:
    """The suite while records are processed again: their events it learned in a try that
    failed (``learned``) are evaluated as usual but not learned twice."""

    def __init__(self, suite: DetectorSuite, learned: set[EventKey]) -> None:
        self.suite = suite
        self.learned = learned

    def learn(self, snap: Snapshot, flagged: bool) -> None:
        # Passed on as flagged: the suite learns nothing from a flagged snapshot, and forgets
        # what evaluating it kept (the anomaly model's features and score).
        self.suite.learn(snap, flagged or (snap.account_id, snap.event_id) in self.learned)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: AccountStore,
        suite: DetectorSuite,
        alerts: AlertSink,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        checkpoint_key: str | None = None,
        campaigns: CampaignStore | None = None,
        clock: Callable[[], float] = time.time,
        groups: GroupStep | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.suite = suite
        self.outputs = (alerts, dead_letters)
        self.metrics = metrics
        self.checkpoint_key = checkpoint_key
        self.campaigns = campaigns
        self.groups = groups  # the group-first campaign stage, instead of ``campaigns``
        self.clock = clock
        self._batches = 0
        self.tagger = intent_model.tagger(settings.intent)
        self._pending: PendingBatch | None = None  # the last batch, not yet written
        self._durable: list[RawRecord] = []  # written, not yet handed to the caller
        # Events the models learned in tries that failed, by record: until their records are
        # processed or rejected, the models do not learn them again.
        self._taught: dict[Position, EventKey] = {}
        self._learner: Learner = suite

    def process(
        self, records: list[RawRecord], on_durable: Callable[[list[RawRecord]], Any] | None = None
    ) -> BatchResult:
        """``on_durable`` gets the previous batch's records as soon as their state is written.

        If it raises, the events the models learned meanwhile are remembered: processing these
        records again (a retry, or a part of them) does not teach the models twice."""
        self._learner = self._learner_for(records)
        applied: dict[str, list[EventFeatures]] = defaultdict(list)
        try:
            result = self._process(records, on_durable, applied)
        except BaseException:
            self._taught.update(
                ((f.partition, f.offset), (f.account_id, f.event_id))
                for fs in applied.values()
                for f in fs
            )
            raise
        self._settled(records)
        return result

    def _process(
        self,
        records: list[RawRecord],
        on_durable: Callable[[list[RawRecord]], Any] | None,
        applied: dict[str, list[EventFeatures]],
    ) -> BatchResult:
        """The stages; ``applied`` gets each account's events, in order, as they are learned."""
        started = time.perf_counter()
        result = BatchResult(consumed=len(records))
        events, dead = decode_batch(records, self.clock() + self.settings.features.max_future_s)
        result.invalid = len(dead)
        loaded, feats = self._load(events, result, on_durable)
        suspicion = self._apply(feats, loaded, result, applied)
        alerts, commands = self._link(records, applied, loaded, suspicion)
        result.alerts.extend(alerts)
        # Sent only once nothing can fail: a batch processed again sends them again.
        write = StateWrite(loaded, self._checkpoint_due() + commands)
        self._pending = PendingBatch.sent(write, records, result.alerts, dead, self.outputs)
        result.durable, self._durable = self._durable, []
        self._observe(result, dead, time.perf_counter() - started)
        return result

    def reject(self, records: list[RawRecord], error: Exception) -> BatchResult:
        """Dead-letter records whose processing raised ``error`` (reason ``processing_error``).

        They are committed with the batch before them once it is written (at once if
        there is none), and their dead letters are acknowledged first.
        """
        name = type(error).__name__
        dead = [
            DeadLetter("processing_error", f"{name} while processing", r, error=name)
            for r in records
        ]
        # Kept before delivering: if that fails, the retry finds these records and their dead
        # letters in the batch, and delivers them without sending them again.
        pending = self._pending = self._pending or PendingBatch(None, [])
        pending.join(records, dead, self.outputs)
        pending.deliver(self.outputs)
        if pending.write is None:
            self._written([], BatchResult())
        self._settled(records)
        result = BatchResult(consumed=len(records), invalid=len(records))
        result.durable, self._durable = self._durable, []
        self.metrics.events_consumed.inc(len(records))
        self.metrics.events_invalid.labels("processing_error").inc(len(records))
        return result

    @property
    def unwritten(self) -> bool:
        return self._pending is not None

    def flush(self) -> BatchResult:
        """Write the last batch's state now (the stream paused, or the worker stops)."""
        result = BatchResult()
        pending = self._pending
        if pending is not None:
            pending.deliver(self.outputs)
            write = pending.write
            conflicts = self.store.save(write.states, write.commands) if write else []
            self._written(conflicts, result)
        result.durable, self._durable = self._durable, []
        if result.conflicts:
            self.metrics.state_conflicts.inc(len(result.conflicts))
        return result

    def close(self) -> None:
        self.store.close()

    def _load(
        self,
        events: list[QueryEvent],
        result: BatchResult,
        on_durable: Callable[[list[RawRecord]], Any] | None,
    ) -> tuple[LoadedBatch, list[EventFeatures]]:
        """Load the batch's account states, in the round trip that writes the previous batch
        (delivered first), and extract features meanwhile. That write goes first, before
        this batch's features, so the previous batch is committed as early as it can be."""
        pending = self._pending
        write = None
        if pending is not None:
            pending.deliver(self.outputs)
            write = pending.write
        reads = [self.campaigns.watermarks_command()] if self.campaigns else []
        accounts = (e.account_id for e in events)
        trip = self.store.send_load(
            accounts, reads, *((write.states, write.commands) if write else (None, None))
        )
        feats = _meanwhile(trip, extract_batch, events, self.settings.features, self.tagger)
        loaded = trip.result()
        if pending is not None:
            records = pending.records
            self._written(loaded.conflicts, result)
            if on_durable is not None:
                on_durable(records)
        return loaded, feats

    def _apply(
        self,
        feats: list[EventFeatures],
        loaded: LoadedBatch,
        result: BatchResult,
        applied: dict[str, list[EventFeatures]],
    ) -> dict[str, float]:
        """Each event into its account's state, then the detectors; per account, the events
        applied (into ``applied``, each before the models learn it) and how suspect it looks
        (its highest finding score)."""
        suspicion: dict[str, float] = defaultdict(float)
        for feat in feats:
            state = loaded.states[feat.account_id]
            snap = apply_event(state, feat, self.settings.state)
            if snap is None:
                result.duplicates += 1
                continue
            result.applied += 1
            result.late += snap.late
            applied[feat.account_id].append(feat)
            alerts, score = self._decide(state, snap)
            result.alerts.extend(alerts)
            suspicion[feat.account_id] = max(suspicion[feat.account_id], score)
        return suspicion

    def _link(
        self,
        records: list[RawRecord],
        applied: dict[str, list[EventFeatures]],
        loaded: LoadedBatch,
        suspicion: dict[str, float],
    ) -> tuple[list[Alert], list[tuple[Any, ...]]]:
        """Link the batch's accounts through shared evidence; the alerts on what changed and
        the commands that record them as sent, written with the batch's state. The states
        are final here: their write is encoded while Redis links."""
        if self.groups is not None and applied:
            step = self.groups.run(applied, loaded.states, partial(self.store.encode, loaded))
            return step.alerts, step.commands
        if self.campaigns is None or not records:
            self.store.encode(loaded)
            return [], []
        # How far each partition's traffic is already counted: a batch processed again after
        # a crash links again but does not count twice.
        counted = link_watermarks(loaded.extra[0])
        through, fresh = uncounted(records[0].topic, counted, applied)
        links = account_links(applied, fresh, loaded.states, suspicion, self.settings)
        trip = self.campaigns.send_link(links, through)
        _meanwhile(trip, self.store.encode, loaded)
        linked = trip.result()
        last_ts = {link.account_id: link.ts for link in links}
        return campaign_alerts(linked, last_ts, self.campaigns, self.settings, self.clock())

    def _learner_for(self, records: list[RawRecord]) -> Learner:
        """The suite, or while some of ``records`` were learned in a try that failed, the suite
        learning only the others."""
        if not self._taught:  # the batch is processed for the first time: most batches
            return self.suite
        taught = self._taught
        positions = ((r.partition, r.offset) for r in records)
        return LearnOnce(self.suite, {taught[p] for p in positions if p in taught})

    def _settled(self, records: list[RawRecord]) -> None:
        """``records`` are processed or rejected: they will not be processed again."""
        if self._taught:
            for r in records:
                self._taught.pop((r.partition, r.offset), None)

    def _written(self, conflicts: list[str], result: BatchResult) -> None:
        """The pending batch's state is written: its records are durable."""
        assert self._pending is not None
        self._durable.extend(self._pending.written())
        self._pending = None
        result.conflicts = conflicts

    def _decide(self, state: AccountState, snap: Snapshot) -> tuple[list[Alert], float]:
        """Alerts for one snapshot, and how suspect the account looks (highest finding score)."""
        findings, context = self.suite.evaluate(snap)
        if "anomaly" in context:
            self.metrics.anomaly_score.observe(context["anomaly"]["score"])
        if not findings:  # most events
            self._learner.learn(snap, flagged=False)
            return [], 0.0
        out = []
        cooldown_s = self.settings.alerting.cooldown_s
        for finding in findings:
            if alerting.should_emit(state, finding, snap.ts, cooldown_s):
                alerting.start_cooldown(state, finding, snap.ts)
                out.append(alerting.account_alert(snap, finding, context, self.clock()))
        self._learner.learn(snap, flagged=any(f.rank >= FLAG_RANK for f in findings))
        # A template alone is what batch jobs do; intent or volume make an account a suspect.
        suspicion = max((f.score for f in findings if f.type in SUSPECT_TYPES), default=0.0)
        return out, suspicion

    def _checkpoint_due(self) -> list[tuple[Any, ...]]:
        self._batches += 1
        every = self.settings.anomaly.checkpoint_every_batches
        if self.checkpoint_key is None or self._batches % every:
            return []
        return [("SET", self.checkpoint_key, self.suite.checkpoint())]

    def _observe(self, result: BatchResult, dead: list[Any], seconds: float) -> None:
        m = self.metrics
        m.events_consumed.inc(result.consumed)
        m.events_applied.inc(result.applied)
        m.events_duplicate.inc(result.duplicates)
        m.events_late.inc(result.late)
        for letter in dead:
            m.events_invalid.labels(letter.reason).inc()
        for alert in result.alerts:
            m.alerts.labels(alert.type, alert.severity).inc()
        if result.conflicts:
            m.state_conflicts.inc(len(result.conflicts))
        m.batch_seconds.observe(seconds)
        m.batch_size.observe(result.consumed)


def _meanwhile(pending: Pending[Any], work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``, done while ``pending`` is out; the round trip is given up if it fails."""
    try:
        return work(*args)
    except BaseException:
        pending.discard()
        raise


def campaign_alerts(
    linked: LinkResult,
    last_ts: dict[str, float],
    store: CampaignStore,
    settings: Settings,
    now: float,
) -> tuple[list[Alert], list[tuple[Any, ...]]]:
    """Alerts on the campaigns and origins a link touched (new members, material growth, a
    move to a new model, an origin whose traffic is mostly a campaign's), and the commands
    that record them as sent. ``last_ts``: each linked account's latest event time."""
    s = settings.campaigns
    alerts: list[Alert] = []
    commands: list[tuple[Any, ...]] = []
    for campaign in linked.campaigns:
        if campaign.members < s.min_suspects:
            continue
        finding = judge(campaign, s)
        cid = campaign.campaign_id
        for account in campaign.new_members:
            ts = last_ts.get(account, campaign.last)
            alerts.append(alerting.member_alert(account, cid, finding, ts, now))
        if campaign.new_members:
            commands.append(store.announced_command(campaign, campaign.new_members))
        changes: list[tuple[Finding, str]] = []  # (finding, trigger of its alert id)
        if campaign.listed:
            changes.append((finding, str(campaign.members)))
            commands.append(store.alerted_command(campaign))
        moved = pivot(campaign, linked.model_first_seen, s, finding)
        if moved is not None:
            model, pivot_finding = moved
            changes.append((pivot_finding, model))
            commands.append(store.pivot_alerted_command(campaign, model))
        for change, trigger in changes:
            alerts.append(
                alerting.campaign_alert(
                    cid,
                    change,
                    trigger=trigger,
                    accounts=campaign.listed,
                    members=campaign.members,
                    ts=campaign.last,
                    first_seen=campaign.created,
                    events=campaign.events,
                    emitted_at=now,
                )
            )
    latest = max(last_ts.values(), default=0.0)
    for mix in linked.sources:
        found = source(mix, s, latest)
        if found is None:
            continue
        evidence = dict(found.evidence, campaign_id=campaign_id(mix.campaign_root))
        found = msgspec.structs.replace(found, evidence=evidence)
        alerts.append(
            alerting.source_alert(
                mix.evidence,
                found,
                trigger=f"{mix.request_share:.1f}",
                campaign_accounts=mix.campaign_accounts,
                requests=mix.requests,
                ts=latest,
                emitted_at=now,
            )
        )
        commands.append(store.source_alerted_command(mix, latest))
    return alerts, commands


def account_links(
    applied: dict[str, list[EventFeatures]],
    fresh: dict[str, list[EventFeatures]],
    states: dict[str, AccountState],
    suspicion: dict[str, float],
    settings: Settings,
) -> list[AccountLinks]:
    """What each account of a batch brings to the campaign link: evidence from every event
    applied, traffic (count and models) from the events not yet counted (``fresh``)."""
    s = settings.campaigns
    return [
        AccountLinks(
            account,
            fs[-1].ts,
            suspicion[account] >= s.suspect_score,
            len(fresh[account]),
            evidence_of(
                fs,
                s.evidence_kinds,
                s.evidence_per_account,
                # Timing needs enough events to mean anything.
                lockstep_bands(states[account].profile)
                if states[account].events >= settings.behaviour.min_events
                else (),
            ),
            tuple(Counter(f.model for f in fresh[account]).items()),
            focus(states[account].profile),
        )
        for account, fs in applied.items()
    ]


def uncounted(
    topic: str, counted: dict[str, int], applied: dict[str, list[EventFeatures]]
) -> tuple[dict[str, int], dict[str, list[EventFeatures]]]:
    """Each partition's last offset in the batch, and each account's events not yet counted.

    >>> f = [EventFeatures("a", "e", 0, 0.0, p, o, "m", 0, 0, 0, None, "", "") for p, o in
    ...      [(0, 5), (1, 9), (0, 6)]]
    >>> through, fresh = uncounted("t", {"t|0": 5}, {"a": f[:2], "b": f[2:]})
    >>> through, {k: [(x.partition, x.offset) for x in v] for k, v in fresh.items()}
    ({'t|0': 6, 't|1': 9}, {'a': [(1, 9)], 'b': [(0, 6)]})
    """
    # By partition number: its key is formatted once per batch, not once per event.
    last: dict[int, int] = {}
    known: dict[int, int] = {}
    fresh: dict[str, list[EventFeatures]] = {}
    for account, fs in applied.items():
        kept: list[EventFeatures] = []
        fresh[account] = kept
        for f in fs:
            p = f.partition
            if f.offset > last.get(p, -1):
                last[p] = f.offset
            if p not in known:
                known[p] = counted.get(partition_key(topic, p), -1)
            if f.offset > known[p]:
                kept.append(f)
    return {partition_key(topic, p): offset for p, offset in last.items()}, fresh
