"""Isolating the records that make a batch fail: retried, split in order, the rest processed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.detectors.suite import DetectorSuite
from detector.errors import RedisUnavailable
from detector.events import RawRecord
from detector.isolation import TRIES, process_isolating
from detector.metrics import Metrics
from detector.pipeline import BatchResult, LearnOnce
from detector.state.account import Distinct, Snapshot


class Poisoned(Exception):
    """What a poisoned record raises."""


class Recorder:
    """Processes parts of a batch; a part holding a poisoned offset raises."""

    def __init__(self, poisoned: set[int], flaky: int = 0) -> None:
        self.poisoned = poisoned
        self.flaky = flaky  # so many first calls fail whatever they hold
        self.processed: list[int] = []
        self.rejected: list[int] = []
        self.calls = 0

    def process(self, records: list[RawRecord]) -> BatchResult:
        self.calls += 1
        if self.calls <= self.flaky or any(r.offset in self.poisoned for r in records):
            raise Poisoned
        self.processed += [r.offset for r in records]
        return BatchResult(durable=list(records), consumed=len(records), applied=len(records))

    def reject(self, records: list[RawRecord], error: Exception) -> BatchResult:
        assert isinstance(error, Poisoned)
        self.rejected += [r.offset for r in records]
        return BatchResult(durable=list(records), consumed=len(records), invalid=len(records))


def _records(n: int) -> list[RawRecord]:
    return [RawRecord("q", 0, i, None, b"{}") for i in range(n)]


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_exactly_the_poisoned_records_are_rejected_and_the_rest_processed_in_order(
    case: tuple[int, set[int]],
) -> None:
    n, poisoned = case
    run = Recorder(poisoned)
    result = process_isolating(_records(n), run.process, run.reject, _metrics())
    assert result is not None
    assert sorted(run.rejected) == sorted(poisoned)
    assert run.processed == [i for i in range(n) if i not in poisoned]  # in offset order
    assert [r.offset for r in result.durable] == list(range(n))
    assert (result.consumed, result.applied, result.invalid) == (
        n,
        n - len(poisoned),
        len(poisoned),
    )


def test_a_batch_that_fails_once_is_retried_whole() -> None:
    run = Recorder(set(), flaky=TRIES - 1)
    metrics = _metrics()
    result = process_isolating(_records(10), run.process, run.reject, metrics)
    assert result is not None and result.applied == 10
    assert run.rejected == [] and run.calls == TRIES
    failures = metrics.registry.get_sample_value(
        "detector_batch_failures_total", {"error": "Poisoned"}
    )
    assert failures == TRIES - 1


def test_one_poisoned_record_costs_a_few_tries_per_halving() -> None:
    run = Recorder({700})
    process_isolating(_records(1000), run.process, run.reject, _metrics())
    assert run.rejected == [700]
    assert run.calls <= 3 * 11  # ~log2(1000) levels, each a failing part tried twice


def test_an_outage_is_not_a_poisoned_record() -> None:
    def down(records: list[RawRecord]) -> BatchResult:
        raise RedisUnavailable("redis: ConnectionError")

    with pytest.raises(RedisUnavailable):
        process_isolating(_records(4), down, Recorder(set()).reject, _metrics())


def test_a_stop_while_isolating_stops_at_once() -> None:
    calls: list[int] = []

    def stopping(records: list[RawRecord]) -> BatchResult | None:
        calls.append(len(records))
        if len(records) > 1:
            raise Poisoned
        return None  # asked to stop while a dependency was down

    assert process_isolating(_records(4), stopping, Recorder(set()).reject, _metrics()) is None
    assert calls == [4, 4, 2, 2, 1]  # the right halves were never tried


def _snapshot(events: int) -> Snapshot:
    return Snapshot(
        "a", f"e{events}", 1e9 + events, events, 1e9, None, (1.0,) * 3, (10.0,) * 3, 1.0,
        Distinct(1, 1, 1), None, False,
    )  # fmt: skip


def test_the_models_do_not_learn_again_what_a_try_that_failed_taught_them() -> None:
    suite = DetectorSuite(Settings().with_overrides(anomaly={"every_events": 2}))
    once = LearnOnce(suite, {("a", "e2")})
    for events in (2, 3):  # the anomaly model scores the account's 2nd event, not its 3rd
        suite.evaluate(_snapshot(events))
        once.learn(_snapshot(events), flagged=False)
    # Neither e2 again, nor e2's features when e3 is learned.
    assert suite.anomaly.learned == 0
    suite.evaluate(_snapshot(4))
    once.learn(_snapshot(4), flagged=False)
    assert suite.anomaly.learned == 1
