"""What the fuzz harnesses check: the decoder's invariant, and the pure per-event steps of
``Pipeline.process`` called the way it calls them, on a worker's warm state.

The harness entry points import this module under ``atheris.instrument_imports``, so the
``detector`` modules it imports first are the instrumented ones. A check that fails raises
``InvariantError``: libFuzzer reports it as a crash and saves the input.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import msgpack
import msgspec
import orjson
from prometheus_client import CollectorRegistry

from detector import alerting
from detector.config import EVIDENCE_KINDS, Settings
from detector.contract import ALERT_SCHEMA, QUERY_EVENT_SCHEMA, load_schema, validator
from detector.decode import REASONS, _decode_slowly, decode_batch, decode_record
from detector.detectors.campaign import evidence_of, judge, pivot, source
from detector.detectors.suite import DetectorSuite
from detector.events import CONTRACT_FIELDS, Alert, DeadLetter, QueryEvent, RawRecord
from detector.features import EventFeatures, extract_batch
from detector.metrics import Metrics
from detector.pipeline import Pipeline, account_links
from detector.state.account import AccountState, apply_event
from detector.state.campaigns import CampaignState, SourceMix, campaign_id
from detector_lab.sim.basic import BasicTraffic, generate

TOPIC: Final = "llm.queries"
# A fixed clock, as a replay has: the decoder's bound on ts is this plus max_future_s.
NOW: Final = 1_767_225_600.0 + 86400.0
SETTINGS: Final = Settings()
NOT_AFTER: Final = NOW + SETTINGS.features.max_future_s
# A dead letter's detail may name fields and numbers, never echo this much of the message.
ECHO_CHARS: Final = 32
_NUMERIC: Final = frozenset(b"0123456789.-+eE ")
# Text a detail may share with a message without echoing it: the schema's own words.
_VOCABULARY: Final = (
    orjson.dumps(load_schema(QUERY_EVENT_SCHEMA))
    + b"\n".join(r.encode() for r in REASONS)
    + b"\n"
    + "\n".join(
        decode_record(RawRecord(TOPIC, 0, 0, None, v)).detail  # type: ignore[union-attr]
        for v in (b"{}", b'{"ts": "x"}', b'{"status": "x"}')
    ).encode()
)
_INTEGER_MAX: Final = 2**64 - 1  # the reference path takes what orjson reads as an integer
_BOM: Final = b"\xef\xbb\xbf"
_NUMBER_FIELDS: Final = frozenset(
    name
    for name, spec in load_schema(QUERY_EVENT_SCHEMA)["properties"].items()
    if "number" in str(spec["type"])
)
_INTEGER_FIELDS: Final = frozenset(
    name
    for name, spec in load_schema(QUERY_EVENT_SCHEMA)["properties"].items()
    if spec["type"] == "integer"
)


class InvariantError(AssertionError):
    """A fuzzed input broke an invariant the harness checks (not an exception of the code)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantError(message)


# --- the decoder ---------------------------------------------------------------------------

_seen_undecodable: set[str] = set()


def check_decoded(record: RawRecord, result: object, not_after: float = NOT_AFTER) -> None:
    """decode_record's promise: an event the contract accepts, or a dead letter whose reason
    is one of REASONS and whose detail does not echo the message."""
    if isinstance(result, DeadLetter):
        check_dead_letter(record, result)
        return
    _require(isinstance(result, QueryEvent), f"decode_record returned {type(result).__name__}")
    assert isinstance(result, QueryEvent)
    _require(
        (result.partition, result.offset) == (record.partition, record.offset),
        "event lost its partition and offset",
    )
    fields = {f: getattr(result, f) for f in CONTRACT_FIELDS if getattr(result, f) is not None}
    validator(QUERY_EVENT_SCHEMA)(fields)  # raises JsonSchemaValueException: a crash
    _require(result.ts <= not_after, f"ts {result.ts} past the bound {not_after}")
    for name in _NUMBER_FIELDS & fields.keys():
        _require(type(fields[name]) is float, f"{name} is a {type(fields[name]).__name__}")
    for name in _INTEGER_FIELDS & fields.keys():
        _require(type(fields[name]) is int, f"{name} is a {type(fields[name]).__name__}")
        _require(fields[name] <= _INTEGER_MAX, f"{name} past 64 bits")
    # The fast path accepts what the reference path accepts, with the same values; except
    # that it skips unknown fields unchecked (invalid UTF-8 or a number out of range there
    # refuses the whole message on the reference path: reported in issue 27's note), so
    # where they disagree the reference path decides on the known fields alone.
    reference = _decode_slowly(record, not_after)
    if reference != result:
        known = _known_fields_only(record.value)
        if known is not None:
            projected = RawRecord(record.topic, record.partition, record.offset, None, known)
            reference = _decode_slowly(projected, not_after)
    _require(
        reference == result,
        f"fast and reference paths disagree: {_fields(result)} != {_fields(reference)}",
    )


def _known_fields_only(value: bytes) -> bytes | None:
    """The message's contract fields as JSON, read leniently (invalid UTF-8 kept as escapes,
    any number): what the decoder would see if the unknown fields were not there."""
    try:
        data = json.loads(value.removeprefix(_BOM).decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return json.dumps({k: v for k, v in data.items() if k in CONTRACT_FIELDS}).encode()


def check_dead_letter(record: RawRecord, letter: DeadLetter) -> None:
    _require(letter.reason in REASONS, f"reason {letter.reason!r} is not in REASONS")
    _require(letter.record is record, "dead letter lost its record")
    _require(isinstance(letter.detail, str), "detail is not text")
    echoed = echo(letter.detail, record.value)
    _require(echoed is None, f"detail of {letter.reason} echoes the message: {echoed!r}")
    if letter.reason == "undecodable" and letter.error not in _seen_undecodable:
        # The safety net caught something nobody foresaw: not a failure, but worth a look.
        _seen_undecodable.add(str(letter.error))
        print(f"NOTE: undecodable ({letter.error}) on {record.value[:80]!r}", file=sys.stderr)


def echo(detail: str, value: bytes) -> bytes | None:
    """The first stretch of ``ECHO_CHARS`` bytes of ``detail`` that is also in ``value``, if
    any, unless it is only a number or the schema's own words."""
    text = detail.encode("utf-8", "surrogatepass")
    for at in range(len(text) - ECHO_CHARS + 1):
        window = text[at : at + ECHO_CHARS]
        if window in value and not set(window) <= _NUMERIC and window not in _VOCABULARY:
            return window
    return None


def _fields(event: object) -> object:
    if isinstance(event, QueryEvent):
        return {f: getattr(event, f) for f in (*CONTRACT_FIELDS, "partition", "offset")}
    return event


def decode_one(data: bytes) -> None:
    """Target of ``tests.fuzz.decode``: one message, as a Kafka record."""
    record = RawRecord(TOPIC, 3, 17, None, data)
    check_decoded(record, decode_record(record, NOT_AFTER))


# --- the per-event path --------------------------------------------------------------------


def check_alert(alert: Alert) -> None:
    """An alert as the sinks publish it: serialisable, contract-valid, keyed by its subject."""
    validator(ALERT_SCHEMA)(orjson.loads(alert.encode()))
    alert.subject_id.encode("utf-8")


class EventPath:
    """The pure per-event steps of ``Pipeline.process``, without Redis: features of the
    batch, then per event the account's state, the detectors, cooldown and the alert; at
    the end of the batch, the campaign links of each account and the state's stored form.

    Built warm: the detectors have learned from simulated traffic (the anomaly model is
    past its first window, the baselines past their minimum samples: 8 hours of
    traffic of 100 honest accounts and an abusive one), and two accounts'
    states (an honest one, an abusive one with findings and cooldowns) are kept as the
    bytes the store holds, so each input starts from the same states. ``warm`` names a file
    that ``save`` wrote: the detectors restored from its checkpoint, as a restarted worker
    restores them, instead of learning again (seconds, once instrumented).
    """

    # Offsets of the fuzzed records start past those of the warm-up: not redeliveries.
    FIRST_OFFSET: Final = 10**6

    def __init__(self, settings: Settings = SETTINGS, warm: str | None = None) -> None:
        self.settings = settings
        self.suite = DetectorSuite(settings)
        # The real decision step (cooldown, alert, learn unless flagged): the pipeline's own
        # method, so the harness cannot drift from it. It touches no Redis or broker.
        self.pipeline = Pipeline(
            settings,
            None,  # type: ignore[arg-type]
            self.suite,
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            Metrics(CollectorRegistry()),
            clock=lambda: NOW,
        )
        self.n_windows = len(settings.state.windows_s)
        if warm is not None:
            checkpoint, *self.warm = msgpack.unpackb(Path(warm).read_bytes())
            _require(self.suite.restore(checkpoint), f"{warm} holds no usable checkpoint")
            return
        states: dict[str, AccountState] = defaultdict(self.fresh)
        traffic = generate(BasicTraffic(benign_accounts=100, hours=8.0, seed=11))
        records = [RawRecord(TOPIC, 0, i, None, orjson.dumps(e)) for i, e in enumerate(traffic)]
        for at in range(0, len(records), 500):
            self.process(records[at : at + 500], states.__getitem__)
        counts = Counter(e["account_id"] for e in traffic)
        honest = max((a for a in counts if a != "acct-abuse-001"), key=counts.__getitem__)
        self.warm = [states[honest].to_bytes(), states["acct-abuse-001"].to_bytes()]

    def save(self, path: Path) -> None:
        path.write_bytes(msgpack.packb([self.suite.checkpoint(), *self.warm]))

    def fresh(self) -> AccountState:
        return AccountState.from_bytes(None, self.n_windows)

    def warm_state(self, which: int) -> AccountState:
        """A copy of a warm state (0: honest, 1: abusive), as the store loads it."""
        return AccountState.from_bytes(self.warm[which], self.n_windows)

    def states(self, which: int | None) -> Callable[[str], AccountState]:
        """Every account's state fresh (``None``), or a copy of one warm state."""
        if which is None:
            return lambda _: self.fresh()
        return lambda _: self.warm_state(which)

    def process(
        self, records: list[RawRecord], state_of: Callable[[str], AccountState]
    ) -> list[Alert]:
        """One batch; ``state_of`` gives each account's state. Returns the alerts."""
        s = self.settings
        for record in records:  # decode_batch is this loop: each result checked on its own
            check_decoded(record, decode_record(record, NOT_AFTER))
        events, _ = decode_batch(records, NOT_AFTER)
        feats = extract_batch(events, s.features, self.pipeline.tagger)
        _require(len(feats) == len(events), "extract_batch lost events")

        states: dict[str, AccountState] = {}
        applied: dict[str, list[EventFeatures]] = defaultdict(list)
        suspicion: dict[str, float] = defaultdict(float)
        alerts: list[Alert] = []
        for feat in feats:
            state = states.get(feat.account_id)
            if state is None:
                state = states[feat.account_id] = state_of(feat.account_id)
            snap = apply_event(state, feat, s.state)
            if snap is None:
                continue
            applied[feat.account_id].append(feat)
            # Every finding as an alert, also those the cooldown holds back: the builder
            # must take whatever a detector finds.
            findings, context = self.suite.evaluate(snap)
            for finding in findings:
                check_alert(alerting.account_alert(snap, finding, context, NOW))
            emitted, score = self.pipeline._decide(state, snap)
            alerts += emitted
            suspicion[feat.account_id] = max(suspicion[feat.account_id], score)
        for alert in alerts:
            check_alert(alert)
        alerts += self._campaign_alerts(states, applied, suspicion)
        for account, state in states.items():
            # What the store writes and the next batch reads back must be the same state.
            again = AccountState.from_bytes(state.to_bytes(), self.n_windows)
            _require(again == state, f"state of {account!r} changed in its stored form")
        return alerts

    def _campaign_alerts(
        self,
        states: dict[str, AccountState],
        applied: dict[str, list[EventFeatures]],
        suspicion: dict[str, float],
    ) -> list[Alert]:
        """The batch's campaign links, as ``Pipeline._campaigns`` builds them, then the campaign
        alert builders on a campaign made of these accounts (linking itself runs in Redis)."""
        s = self.settings.campaigns
        links = account_links(applied, applied, states, suspicion, self.settings)
        if not links:
            return []
        # Every evidence kind, also those off by default: a deployment may turn them on.
        every_kind = evidence_of((f for fs in applied.values() for f in fs), EVIDENCE_KINDS, 10**6)
        evidence = [e for link in links for e in link.evidence] + list(every_kind)
        models: Counter[str] = Counter()
        for link in links:
            models.update(dict(link.models))
        accounts = [link.account_id for link in links]
        first, last = min(link.ts for link in links), max(link.ts for link in links)
        events = sum(link.events for link in links)
        campaign = CampaignState(
            root=evidence[0] if evidence else accounts[0],
            created=first,
            last=last,
            members=max(len(links), s.min_suspects),
            alerted=len(links) // 2,
            events=events,
            kinds=tuple(sorted({e.partition(":")[0] for e in evidence})),
            new_members=accounts,
            listed=accounts,
            models=dict(models),
            population_models={m: 2 * n for m, n in models.items()},
            capabilities=dict(Counter(link.capability for link in links if link.capability)),
            joined_recently=len(links),
        )
        cid = campaign.campaign_id
        finding = judge(campaign, s)
        out = [alerting.member_alert(a, cid, finding, last, NOW) for a in accounts]
        changes = [(finding, str(campaign.members))]
        moved = pivot(campaign, {m: first for m in models}, s, finding)
        if moved is not None:
            changes.append((moved[1], moved[0]))
        for change, trigger in changes:
            out.append(
                alerting.campaign_alert(
                    cid,
                    change,
                    trigger=trigger,
                    accounts=accounts,
                    members=campaign.members,
                    ts=last,
                    first_seen=first,
                    events=events,
                    emitted_at=NOW,
                )
            )
        for value in _sources(evidence):
            # A source mostly carrying this campaign, so that ``source`` finds it.
            mix = SourceMix(
                evidence=value,
                requests=10 * events + s.source_min_requests,
                campaign_requests=9 * events + s.source_min_requests,
                accounts=len(links) + s.source_min_accounts,
                campaign_accounts=len(links) + s.source_min_accounts,
                campaign_root=campaign.root,
                alerted_share=0.0,
            )
            found = source(mix, s, last)
            if found is not None:
                evidence_in = dict(found.evidence, campaign_id=campaign_id(mix.campaign_root))
                out.append(
                    alerting.source_alert(
                        mix.evidence,
                        msgspec.structs.replace(found, evidence=evidence_in),
                        trigger=f"{mix.request_share:.1f}",
                        campaign_accounts=mix.campaign_accounts,
                        requests=mix.requests,
                        ts=last,
                        emitted_at=NOW,
                    )
                )
        for alert in out:
            check_alert(alert)
        return out


def _sources(evidence: Iterable[str]) -> list[str]:
    return sorted({e for e in evidence if e.startswith(("range:", "asnua:"))})
