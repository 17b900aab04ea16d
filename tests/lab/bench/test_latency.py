from __future__ import annotations

import gc
import os
import sys
import threading

import pytest

from detector.app import GC_YOUNG_THRESHOLD
from detector_lab.bench.latency import (
    GENERATOR_NICE,
    _settled_heap,
    _yielding,
    commit_times,
    latency_summary,
)
from detector_lab.bench.topic import Sent


def test_commit_time_is_the_first_read_showing_the_offset_committed() -> None:
    reads = [(1.0, {0: 0, 1: 0}), (1.1, {0: 3}), (1.2, {0: 3, 1: 2}), (1.3, {0: 5, 1: 2})]
    sent = [Sent(0, 0, 0.9, 0.9), Sent(0, 2, 0.95, 0.9), Sent(0, 3, 0.96, 0.9)]
    sent += [Sent(1, 1, 0.97, 0.9), Sent(1, 2, 1.0, 0.9)]
    assert commit_times(sent, reads) == [1.1, 1.1, 1.3, 1.2, None]


def test_a_lower_recommit_does_not_move_time_back() -> None:
    # After a rebalance a new owner may commit an older offset again; what was seen stays seen.
    reads = [(1.0, {0: 4}), (1.1, {0: 2}), (1.2, {0: 6})]
    assert commit_times([Sent(0, 3, 0.5, 0.5), Sent(0, 5, 0.5, 0.5)], reads) == [1.0, 1.2]


def test_summary_in_milliseconds() -> None:
    s = latency_summary([i / 1000 for i in range(1, 101)])
    assert s["p50_ms"] == pytest.approx(50)
    assert s["p99_ms"] == pytest.approx(99)
    assert s["max_ms"] == pytest.approx(100)
    assert s["mean_ms"] == pytest.approx(50.5)


def _own_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority is Linux's")
def test_the_paced_producer_yields_the_cpu_and_the_caller_keeps_its_priority() -> None:
    before = _own_priority()
    inside = _yielding(_own_priority)
    assert inside == min(19, before + GENERATOR_NICE)
    assert _own_priority() == before


def test_a_failure_of_the_paced_producer_reaches_the_caller() -> None:
    def fail(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="refused"):
        _yielding(fail, "refused")


def test_the_paced_phase_keeps_the_collector_off_the_heap_and_restores_it() -> None:
    held = [[i] for i in range(1000)]  # stands for the events the bench holds
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with _settled_heap():
        assert gc.get_freeze_count() >= frozen + len(held)
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0
