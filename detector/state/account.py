"""Per-account statistics in event time, as pure functions over a small mutable record.

The record is read from Redis once per batch, updated here event by event, and
written back once per batch. Nothing here does I/O or reads the clock, so a
replay of the same events gives the same snapshots, whatever the batch sizes.
It is stored as one compact binary value (msgpack), a few hundred bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Final

import msgpack
import msgspec
from datasketches import hll_sketch, tgt_hll_type

from detector.config import StateSettings
from detector.features import EventFeatures
from detector.state.profile import Profile, add_event, behaviour_of

HOUR_S: Final = 3600
STATE_FORMAT: Final = 2  # bump when the layout below changes: an unreadable value starts afresh
ID_BYTES: Final = 4
# Native byte order: the layout stored states already have.
_pack_id: Final = struct.Struct("=I").pack
DISTINCT_LG_K: Final = 8  # HyperLogLog of 2^8 registers: exact while small, ~6.5% error beyond
# The largest integer the stored form (msgpack) holds. Token counts come from the event and
# add up in the windows: sums saturate here, or one account's value could no longer be written.
TOKENS_MAX: Final = 2**64 - 1


class DistinctValues:
    """Approximate distinct source addresses, models and user agents (datasketches HLLs).

    Kept inside the account's value: a few bytes while the counts are small, at most 168
    each, and updated exactly once per applied event, also when a batch is processed again.
    """

    __slots__ = ("_counts", "_last", "sketches")

    def __init__(self, blobs: list[bytes] | None = None) -> None:
        self.sketches = [
            hll_sketch.deserialize(b) if b else hll_sketch(DISTINCT_LG_K, tgt_hll_type.HLL_4)
            for b in (blobs or [b"", b"", b""])
        ]
        # The last event's values and the counts after it: most accounts keep their address,
        # model and client, and a sketch that holds a value already does not change.
        self._last: tuple[str, str, str] | None = None
        self._counts = Distinct()

    def add(self, ip: str, model: str, user_agent: str) -> Distinct:
        values = (ip, model, user_agent)
        if values == self._last:
            return self._counts
        ips, models, user_agents = self.sketches  # unrolled: this runs for every event
        if ip:
            ips.update(ip)
        if model:
            models.update(model)
        if user_agent:
            user_agents.update(user_agent)
        self._last = values
        self._counts = Distinct(
            round(ips.get_estimate()),
            round(models.get_estimate()),
            round(user_agents.get_estimate()),
        )
        return self._counts

    def blobs(self) -> list[bytes]:
        return [b"" if s.is_empty() else s.serialize_compact() for s in self.sketches]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DistinctValues) and self.blobs() == other.blobs()

    def __repr__(self) -> str:
        return f"DistinctValues({[round(s.get_estimate()) for s in self.sketches]})"


@dataclass(slots=True)
class Window:
    """Sliding-window counter: the current and the previous bucket of ``width_s`` seconds.

    The estimate at time t weighs the previous bucket by the part of it still
    inside ``(t - width_s, t]``: two numbers per quantity instead of a list of events.
    """

    bucket: int = -1
    count: int = 0
    prev_count: int = 0
    tokens: int = 0
    prev_tokens: int = 0

    def add(self, index: int, tokens: int) -> int | None:
        """Count one event in bucket ``index``; returns a just-completed bucket's count, if any."""
        completed = None
        if index > self.bucket:
            if self.bucket >= 0 and self.count:
                completed = self.count
            if index == self.bucket + 1:
                self.prev_count, self.prev_tokens = self.count, self.tokens
            else:
                self.prev_count = self.prev_tokens = 0
            self.bucket, self.count, self.tokens = index, 0, 0
        if index == self.bucket:
            self.count += 1
            self.tokens = min(self.tokens + tokens, TOKENS_MAX)
        elif index == self.bucket - 1:
            self.prev_count += 1
            self.prev_tokens = min(self.prev_tokens + tokens, TOKENS_MAX)
        return completed

    def estimate(self, ts: float, width_s: int) -> tuple[float, float]:
        """(requests, tokens) in the window ending at ``ts``."""
        index = int(ts // width_s)
        if index == self.bucket:
            weight = 1.0 - (ts - index * width_s) / width_s
            return self.count + self.prev_count * weight, self.tokens + self.prev_tokens * weight
        if index == self.bucket + 1:
            weight = 1.0 - (ts - index * width_s) / width_s
            return self.count * weight, self.tokens * weight
        return 0.0, 0.0


@dataclass(slots=True)
class AccountState:
    """Everything kept per account. Stored as one binary value by ``to_bytes``."""

    events: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    created_ts: float = 0.0  # 0: unknown
    wm_partition: int = -1
    wm_offset: int = -1
    # 32-bit hashes of the last event ids, packed (4 bytes each, oldest first): one ``find``
    # checks them all, rather than comparing int objects one by one.
    recent_ids: bytes = b""
    rate: float = 0.0
    rate_ts: float = 0.0
    late_events: int = 0
    windows: list[Window] = field(default_factory=list)
    cooldowns: dict[str, tuple[float, int]] = field(default_factory=dict)  # type -> (ts, rank)
    profile: Profile = field(default_factory=Profile)
    distinct: DistinctValues = field(default_factory=DistinctValues)
    # Evidence values ("kind:value") with how many events carried them (detector.campaigns).
    evidence: dict[str, int] = field(default_factory=dict)

    # The watermark leads the value in text ("partition,offset;") so the store's
    # compare-and-set script can read it without decoding the rest.
    def to_bytes(self) -> bytes:
        body = msgpack.packb(
            [
                STATE_FORMAT,
                self.events,
                self.first_seen,
                self.last_seen,
                self.created_ts,
                self.recent_ids,
                self.rate,
                self.rate_ts,
                self.late_events,
                [[k, t, r] for k, (t, r) in sorted(self.cooldowns.items())],
                [[w.bucket, w.count, w.prev_count, w.tokens, w.prev_tokens] for w in self.windows],
                self.profile.to_list(),
                self.distinct.blobs(),
                self.evidence,
            ]
        )
        return self.watermark_text().encode() + body

    def watermark_text(self) -> str:
        return f"{self.wm_partition},{self.wm_offset};"

    @classmethod
    def from_bytes(cls, value: bytes | None, n_windows: int) -> AccountState:
        """The stored value, or a fresh state if there is none (or one of another format)."""
        if not value:
            return cls(windows=[Window() for _ in range(n_windows)])
        mark, _, body = value.partition(b";")
        fields = msgpack.unpackb(body)
        if fields[0] != STATE_FORMAT:
            return cls.from_bytes(None, n_windows)
        (_, n, first, last, created, ids, rate, rate_ts, late, cd, raw_windows, profile,
         distinct) = fields[:13]  # fmt: skip
        evidence = fields[13] if len(fields) > 13 else {}  # written before evidence was kept
        windows = [Window(*w) for w in raw_windows][:n_windows]
        windows += [Window() for _ in range(n_windows - len(windows))]  # a window was added
        partition, offset = (int(x) for x in mark.split(b","))
        return cls(
            events=n,
            first_seen=first,
            last_seen=last,
            created_ts=created,
            wm_partition=partition,
            wm_offset=offset,
            recent_ids=ids,
            rate=rate,
            rate_ts=rate_ts,
            late_events=late,
            windows=windows,
            cooldowns={k: (t, r) for k, t, r in cd},
            profile=Profile.from_list(profile),
            distinct=DistinctValues(distinct),
            evidence=evidence,
        )

    @property
    def watermark(self) -> tuple[int, int]:
        return self.wm_partition, self.wm_offset


# Snapshot and Distinct are built for every event: msgspec structs, cheaper to build than
# frozen dataclasses (which set each field through object.__setattr__).
class Distinct(msgspec.Struct, frozen=True, gc=False):
    """Approximate distinct values seen by the account (HyperLogLog counts, after this event)."""

    ips: int = 0
    models: int = 0
    user_agents: int = 0


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """An account's statistics right after one of its events was applied."""

    account_id: str
    event_id: str
    ts: float
    events: int
    first_seen: float
    account_age_s: float | None
    requests: tuple[float, ...]  # per configured window
    tokens: tuple[float, ...]
    rate_per_hour: float
    distinct: Distinct
    completed_hour: int | None  # requests of an account-hour that just ended, for baselines
    late: bool
    # What the account's recent requests look like (``profile.behaviour_of``). msgspec copies
    # an empty default (a field() default would not pass mypyc's check of the declared type).
    behaviour: dict[str, float] = {}

    def in_window(self, windows_s: tuple[int, ...], width_s: int) -> float:
        return self.requests[windows_s.index(width_s)]


def is_duplicate(state: AccountState, feat: EventFeatures) -> bool:
    """Redelivered (at or below the watermark of its partition) or a producer duplicate."""
    if feat.partition == state.wm_partition and feat.offset <= state.wm_offset:
        return True
    return has_id(state.recent_ids, _pack_id(feat.id_hash))


def has_id(ids: bytes, key: bytes) -> bool:
    """Whether the 4-byte ``key`` is one of the packed ``ids`` (a match must start at a
    multiple of 4: one straddling two ids is not an id).

    >>> ids = _pack_id(0x01020304) + _pack_id(0x05060708)
    >>> has_id(ids, _pack_id(0x05060708)), has_id(ids, ids[2:6]), has_id(b"", _pack_id(1))
    (True, False, False)
    """
    at = ids.find(key)
    while at > 0 and at % ID_BYTES:
        at = ids.find(key, at + 1)
    return at >= 0


def apply_event(
    state: AccountState, feat: EventFeatures, settings: StateSettings
) -> Snapshot | None:
    """Apply one event to ``state`` in place; ``None`` if it was already counted."""
    if is_duplicate(state, feat):
        return None
    state.wm_partition, state.wm_offset = feat.partition, feat.offset
    if settings.dedup_recent_ids:
        ids = state.recent_ids
        drop = len(ids) - ID_BYTES * (settings.dedup_recent_ids - 1)  # oldest first
        state.recent_ids = (ids[drop:] if drop > 0 else ids) + _pack_id(feat.id_hash)
    distinct = state.distinct.add(feat.source_ip, feat.model, feat.user_agent)

    ts = feat.ts
    if state.events == 0:
        state.first_seen = ts
    state.events += 1
    if feat.created_ts and not state.created_ts:
        state.created_ts = feat.created_ts

    late = state.events > 1 and ts < state.last_seen - settings.lateness_s
    gap = ts - state.last_seen if state.events > 1 and ts >= state.last_seen else None
    add_event(
        state.profile,
        feat,
        state.events,
        gap,
        settings.profile_events,
        settings.near_duplicate_bits,
        settings.recent_templates,
    )
    completed_hour = None
    if late:
        state.late_events += 1
    else:
        event_tokens = feat.tokens_in + feat.tokens_out
        for width, window in zip(settings.windows_s, state.windows, strict=True):
            completed = window.add(int(ts // width), event_tokens)
            if width == HOUR_S:
                completed_hour = completed
        _decay_rate(state, ts, settings.rate_half_life_s)
        state.first_seen = min(state.first_seen, ts)
        state.last_seen = max(state.last_seen, ts)

    requests, tokens = zip(
        *[
            w.estimate(ts, width)
            for width, w in zip(settings.windows_s, state.windows, strict=True)
        ],
        strict=True,
    )
    origin = state.created_ts or state.first_seen
    return Snapshot(
        account_id=feat.account_id,
        event_id=feat.event_id,
        ts=ts,
        events=state.events,
        first_seen=state.first_seen,
        account_age_s=max(0.0, ts - origin) if state.created_ts else None,
        requests=requests,
        tokens=tokens,
        rate_per_hour=rate_per_hour(state, ts, settings.rate_half_life_s),
        distinct=distinct,
        completed_hour=completed_hour,
        late=late,
        behaviour=behaviour_of(state.profile),
    )


def _decay_rate(state: AccountState, ts: float, half_life_s: float) -> None:
    """Exponentially decayed event count; an out-of-order event adds its decayed weight."""
    if ts >= state.rate_ts:
        state.rate = state.rate * math.exp2(-(ts - state.rate_ts) / half_life_s) + 1.0
        state.rate_ts = ts
    else:
        state.rate += math.exp2(-(state.rate_ts - ts) / half_life_s)


def rate_per_hour(state: AccountState, ts: float, half_life_s: float) -> float:
    """The decayed count turned into requests per hour at time ``ts``.

    >>> s = AccountState(rate=10.0, rate_ts=0.0)
    >>> round(rate_per_hour(s, 0.0, 3600.0), 2)
    6.93
    """
    decayed = state.rate * math.exp2(-max(0.0, ts - state.rate_ts) / half_life_s)
    return decayed * math.log(2) / half_life_s * HOUR_S
