"""Per-account state in event time: windows, dedup, lateness, serialisation, decayed rate."""

from __future__ import annotations

import math
from array import array

import msgpack
import pytest
import xxhash
from datasketches import hll_sketch, tgt_hll_type
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from detector.config import StateSettings
from detector.features import EventFeatures
from detector.state.account import (
    DISTINCT_LG_K,
    TOKENS_MAX,
    AccountState,
    Distinct,
    DistinctValues,
    Snapshot,
    Window,
    apply_event,
    has_id,
    rate_per_hour,
)

S = StateSettings()
WINDOWS = S.windows_s  # (60, 3600, 86400)
T0 = 86400.0 * 20_000  # aligned to every window


def feat(
    offset: int,
    ts: float,
    *,
    partition: int = 0,
    event_id: str | None = None,
    tokens_in: int = 0,
    tokens_out: int = 0,
    created_ts: float | None = None,
) -> EventFeatures:
    event_id = event_id or f"e{partition}-{offset}"
    return EventFeatures(
        account_id="acct",
        event_id=event_id,
        id_hash=xxhash.xxh32_intdigest(event_id.encode("utf-8")),
        ts=float(ts),
        partition=partition,
        offset=offset,
        model="m",
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        prompt_chars=0,
        created_ts=created_ts,
        source_ip="",
        user_agent="",
    )


def new_state(settings: StateSettings = S) -> AccountState:
    return AccountState.from_bytes(None, len(settings.windows_s))


def recent(state: AccountState) -> list[int]:
    """The remembered event-id hashes, oldest first."""
    return array("I", state.recent_ids).tolist()


def apply(state: AccountState, f: EventFeatures, settings: StateSettings = S) -> Snapshot:
    snap = apply_event(state, f, settings)
    assert snap is not None
    return snap


def req(snap: Snapshot, width: int) -> float:
    return snap.in_window(WINDOWS, width)


def test_first_event() -> None:
    state = new_state()
    snap = apply(state, feat(0, T0 + 5, tokens_in=3, tokens_out=4))
    assert snap.events == 1
    assert snap.requests == (1.0, 1.0, 1.0)
    assert snap.tokens == (7.0, 7.0, 7.0)
    assert snap.first_seen == T0 + 5
    assert snap.account_age_s is None
    assert snap.late is False
    assert snap.completed_hour is None
    assert (state.wm_partition, state.wm_offset) == (0, 0)


def test_window_counts_across_bucket_boundaries() -> None:
    state = new_state()
    for i, dt in enumerate((0, 10, 20)):
        apply(state, feat(i, T0 + dt))
    snap = apply(state, feat(3, T0 + 70))  # next minute: 10 s into it
    assert req(snap, 60) == pytest.approx(1 + 3 * (1 - 10 / 60))
    assert req(snap, 3600) == pytest.approx(4.0)
    assert req(snap, 86400) == pytest.approx(4.0)
    # two minute-buckets later: the previous bucket is no longer adjacent and is dropped
    snap = apply(state, feat(4, T0 + 185))
    assert req(snap, 60) == pytest.approx(1.0)
    assert req(snap, 3600) == pytest.approx(5.0)


def test_sliding_estimate_weighs_previous_bucket() -> None:
    state = new_state()
    for i in range(5):
        apply(state, feat(i, T0 + 10 * i, tokens_in=100))
    snap = apply(state, feat(5, T0 + 3600 + 1800, tokens_in=100))  # half-way into the next hour
    assert req(snap, 3600) == pytest.approx(1 + 5 * 0.5)
    assert snap.tokens[WINDOWS.index(3600)] == pytest.approx(100 + 500 * 0.5)
    assert req(snap, 86400) == pytest.approx(6.0)
    assert req(snap, 60) == pytest.approx(1.0)


def test_window_estimate_directly() -> None:
    w = Window()
    assert w.add(10, 5) is None
    assert w.add(10, 5) is None
    assert w.estimate(10 * 60 + 30, 60) == pytest.approx((2.0, 10.0))
    assert w.estimate(11 * 60 + 15, 60) == pytest.approx((2 * 0.75, 10 * 0.75))
    assert w.estimate(12 * 60, 60) == (0.0, 0.0)
    assert w.add(11, 1) == 2  # bucket 10 completed with two events
    assert (w.bucket, w.count, w.prev_count) == (11, 1, 2)
    w.add(10, 1)  # one bucket back: counted in the previous bucket
    assert w.prev_count == 3
    w.add(8, 1)  # further back: outside the window, not counted
    assert (w.count, w.prev_count) == (1, 3)


def test_redelivery_at_or_below_watermark_is_a_duplicate() -> None:
    state = new_state()
    apply(state, feat(10, T0))
    apply(state, feat(11, T0 + 1))
    before = state.to_bytes()
    # offset 11 again (same event) and an older offset with an unseen id
    assert apply_event(state, feat(11, T0 + 1), S) is None
    assert apply_event(state, feat(5, T0 + 2, event_id="never-seen"), S) is None
    assert state.to_bytes() == before
    assert state.events == 2


def test_producer_duplicate_at_higher_offset_is_a_duplicate() -> None:
    state = new_state()
    apply(state, feat(1, T0, event_id="dup"))
    apply(state, feat(2, T0 + 1))
    assert apply_event(state, feat(3, T0 + 2, event_id="dup"), S) is None
    assert state.events == 2
    assert state.wm_offset == 2  # a duplicate does not move the watermark


def test_other_partition_is_not_a_duplicate() -> None:
    state = new_state()
    apply(state, feat(100, T0, partition=0))
    snap = apply_event(state, feat(5, T0 + 1, partition=1), S)
    assert snap is not None
    assert snap.events == 2
    assert (state.wm_partition, state.wm_offset) == (1, 5)


@pytest.mark.parametrize("keep", [2, 4, 32])
def test_recent_ids_never_exceed_the_bound(keep: int) -> None:
    settings = StateSettings(dedup_recent_ids=keep)
    state = new_state(settings)
    for i in range(100):
        apply(state, feat(i, T0 + i), settings)
        assert 0 < len(recent(state)) <= keep
        assert recent(state)[-1] == feat(i, T0 + i).id_hash  # the newest id is kept


def test_recent_ids_forget_the_oldest() -> None:
    settings = StateSettings(dedup_recent_ids=2)
    state = new_state(settings)
    for i in range(10):
        apply(state, feat(i, T0 + i, event_id=f"id{i}"), settings)
    assert apply_event(state, feat(20, T0 + 20, event_id="id9"), settings) is None
    assert apply_event(state, feat(21, T0 + 21, event_id="id8"), settings) is None
    assert apply_event(state, feat(22, T0 + 22, event_id="id7"), settings) is not None


@pytest.mark.parametrize("keep", [4, 32])
def test_recent_ids_hold_the_configured_number(keep: int) -> None:
    # regression: a negative slice start kept only about keep/2 ids while the buffer grew
    settings = StateSettings(dedup_recent_ids=keep)
    state = new_state(settings)
    for i in range(3 * keep):
        apply(state, feat(i, T0 + i), settings)
        assert len(recent(state)) == min(i + 1, keep)


def test_producer_duplicate_within_the_default_id_memory() -> None:
    state = new_state()
    for i in range(100):
        apply(state, feat(i, T0 + i, event_id=f"id{i}"))
    # id80 is the 20th most recent of 32 remembered ids: its re-send must be dropped
    assert apply_event(state, feat(200, T0 + 200, event_id="id80"), S) is None


@pytest.mark.parametrize("keep", [0, 1])
def test_recent_ids_tiny_bounds(keep: int) -> None:
    settings = StateSettings(dedup_recent_ids=keep)
    state = new_state(settings)
    for i in range(5):
        apply(state, feat(i, T0 + i), settings)
    assert len(recent(state)) == keep


IDS = st.integers(0, 2**32 - 1)


@given(st.lists(IDS, max_size=40), IDS)
def test_has_id_is_membership_among_whole_ids(ids: list[int], key: int) -> None:
    packed = array("I", ids).tobytes()
    assert has_id(packed, array("I", [key]).tobytes()) == (key in ids)
    # Packed ids are searched as bytes: 4 bytes across two neighbours are not an id.
    for start in range(1, len(packed) - 4, 4):
        straddling = packed[start : start + 4]
        assert has_id(packed, straddling) == (array("I", straddling)[0] in ids)


def test_recent_ids_are_stored_as_the_array_of_earlier_versions() -> None:
    # States written before the ids were kept packed stored ``array("I", ids).tobytes()``.
    state = new_state()
    for i in range(5):
        apply(state, feat(i, T0 + i, event_id=f"id{i}"))
    ids = [xxhash.xxh32_intdigest(f"id{i}".encode()) for i in range(5)]
    _, body = state.to_bytes().split(b";", 1)
    assert msgpack.unpackb(body)[5] == array("I", ids).tobytes()
    assert recent(AccountState.from_bytes(state.to_bytes(), len(WINDOWS))) == ids


def test_late_event_counted_in_totals_not_windows() -> None:
    state = new_state()
    apply(state, feat(0, T0 + 1000))
    apply(state, feat(1, T0 + 1010))
    snap = apply(state, feat(2, T0 + 1010 - S.lateness_s - 1))
    assert snap.late is True
    assert snap.events == 3
    assert state.late_events == 1
    assert state.last_seen == T0 + 1010
    assert state.first_seen == T0 + 1000  # a late event does not move first_seen
    nxt = apply(state, feat(3, T0 + 1020))
    assert nxt.late is False
    assert req(nxt, 3600) == pytest.approx(3.0)  # the late event is not in the window
    assert nxt.events == 4


def test_out_of_order_within_lateness_is_counted() -> None:
    state = new_state()
    apply(state, feat(0, T0 + 1000))
    snap = apply(state, feat(1, T0 + 1000 - S.lateness_s + 1))
    assert snap.late is False
    assert state.late_events == 0
    assert state.first_seen == T0 + 1000 - S.lateness_s + 1
    assert state.last_seen == T0 + 1000
    assert req(apply(state, feat(2, T0 + 1001)), 3600) == pytest.approx(3.0)


def test_completed_hour_reported_when_hour_rolls() -> None:
    state = new_state()
    snaps = [apply(state, feat(i, T0 + 60 * i)) for i in range(5)]
    assert all(s.completed_hour is None for s in snaps)
    snap = apply(state, feat(5, T0 + 3600 + 1))
    assert snap.completed_hour == 5
    assert apply(state, feat(6, T0 + 3600 + 2)).completed_hour is None
    # skipping an hour still reports the last active hour, and the stale bucket is dropped
    snap = apply(state, feat(7, T0 + 3 * 3600 + 5))
    assert snap.completed_hour == 2
    assert req(snap, 3600) == pytest.approx(1.0)


def test_account_age_from_created_ts() -> None:
    state = new_state()
    snap = apply(state, feat(0, T0 + 100, created_ts=T0 - 3600))
    assert snap.account_age_s == pytest.approx(3700.0)
    snap = apply(state, feat(1, T0 + 200, created_ts=T0 - 999_999))  # first known value sticks
    assert snap.account_age_s == pytest.approx(3800.0)
    assert state.created_ts == T0 - 3600


def test_fields_round_trip() -> None:
    state = new_state()
    for i in range(7):
        apply(
            state, feat(i, T0 + 0.1 + 700 * i, tokens_in=i, tokens_out=2 * i, created_ts=T0 - 0.3)
        )
    apply(state, feat(7, T0 + 0.2))  # a late one
    state.cooldowns = {"volume_spike": (T0 + 0.1 + 0.2, 2), "anomaly": (T0 + 1 / 3, 0)}
    value = state.to_bytes()
    assert value.startswith(b"0,7;")  # the watermark the store's compare-and-set reads
    again = AccountState.from_bytes(value, len(WINDOWS))
    assert again == state
    assert again.to_bytes() == value
    assert len(value) < 600


@pytest.mark.parametrize("tokens", [2**63 - 1, 2**64 - 1])
def test_token_sums_saturate_so_the_state_can_always_be_stored(tokens: int) -> None:
    # Found by fuzzing (tests/fuzz): the contract bounds no token count, and a window's sum
    # past 64 bits made to_bytes raise, so the account's batches could no longer be written.
    state = new_state()
    for i, ts in enumerate([T0 + 61, T0 + 62, T0 + 30, T0 + 31]):  # then the minute before
        apply(state, feat(i, ts, tokens_in=tokens, tokens_out=tokens))
    minute = state.windows[0]
    assert (minute.tokens, minute.prev_tokens) == (TOKENS_MAX, TOKENS_MAX)
    assert [w.tokens for w in state.windows[1:]] == [TOKENS_MAX, TOKENS_MAX]
    assert AccountState.from_bytes(state.to_bytes(), len(WINDOWS)) == state


def test_from_bytes_of_nothing_or_another_format_is_a_fresh_state() -> None:
    fresh = AccountState(windows=[Window(), Window(), Window()])
    assert AccountState.from_bytes(None, 3) == fresh
    assert AccountState.from_bytes(b"3,9;" + msgpack.packb([99, "future"]), 3) == fresh
    assert fresh.watermark == (-1, -1)


def test_distinct_values_are_counted_once_each() -> None:
    state = new_state()
    ips = ["10.0.0.1", "10.0.0.2", "10.0.0.1", "", "10.0.0.3"]
    snaps = [
        apply(state, replace(feat(i, T0 + i), source_ip=ip, model="m", user_agent="ua"))
        for i, ip in enumerate(ips)
    ]
    assert [s.distinct.ips for s in snaps] == [1, 2, 2, 2, 3]
    assert {(s.distinct.models, s.distinct.user_agents) for s in snaps} == {(1, 1)}
    again = AccountState.from_bytes(state.to_bytes(), len(WINDOWS))
    snap = apply(again, replace(feat(9, T0 + 9), source_ip="10.0.0.2", model="m2"))
    assert (snap.distinct.ips, snap.distinct.models) == (3, 2)


def test_distinct_counts_skipping_repeats_equal_a_count_from_scratch() -> None:
    """An event with the last event's values reuses its counts: the same as recounting."""
    values = [("a", "m", "u"), ("a", "m", "u"), ("b", "m", "u"), ("b", "n", "u"), ("b", "n", "v")]
    values += [("", "m", "v"), ("", "m", "v"), ("c", "n", "")] * 3

    def from_scratch(seen: list[tuple[str, str, str]]) -> Distinct:
        sketches = [hll_sketch(DISTINCT_LG_K, tgt_hll_type.HLL_4) for _ in range(3)]
        for event in seen:
            for sketch, value in zip(sketches, event, strict=True):
                if value:
                    sketch.update(value)
        return Distinct(*(round(s.get_estimate()) for s in sketches))

    kept = DistinctValues()
    for i, event in enumerate(values):
        assert kept.add(*event) == from_scratch(values[: i + 1])
    assert kept.add("d", "m", "u").ips == 4


def test_from_bytes_adds_a_new_window() -> None:
    state = new_state()
    apply(state, feat(0, T0))
    wider = AccountState.from_bytes(state.to_bytes(), 4)
    assert wider.windows[:3] == state.windows
    assert wider.windows[3] == Window()


def test_rate_per_hour_decays_with_half_life() -> None:
    hl = 1800.0
    state = AccountState(rate=8.0, rate_ts=T0)
    now = rate_per_hour(state, T0, hl)
    assert now == pytest.approx(8.0 * math.log(2) / hl * 3600)
    assert rate_per_hour(state, T0 + hl, hl) == pytest.approx(now / 2)
    assert rate_per_hour(state, T0 + 3 * hl, hl) == pytest.approx(now / 8)
    assert rate_per_hour(state, T0 - 100, hl) == pytest.approx(now)  # never grows backwards


def test_steady_rate_converges_to_requests_per_hour() -> None:
    state = new_state()
    snap = None
    for i in range(2000):  # 100 requests per hour for 20 hours
        snap = apply(state, feat(i, T0 + 36.0 * i))
    assert snap is not None
    assert snap.rate_per_hour == pytest.approx(100.0, rel=0.01)


def test_apply_event_is_deterministic_whatever_the_serialisation_points() -> None:
    events = [feat(i, T0 + 97.0 * i, tokens_in=i % 7) for i in range(200)]
    straight = new_state()
    snaps_a = [apply(straight, f) for f in events]
    chopped = new_state()
    snaps_b = []
    for f in events:  # written back and read again after every event, as per-batch I/O does
        snaps_b.append(apply(chopped, f))
        chopped = AccountState.from_bytes(chopped.to_bytes(), len(WINDOWS))
    assert snaps_a == snaps_b
    assert straight == chopped
