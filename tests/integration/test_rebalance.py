"""Two workers in one group; one is killed, later another joins: nothing lost, nothing twice."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import pytest

from detector.config import Settings
from detector_lab.sim.basic import BasicTraffic, generate
from tests.integration.helpers import (
    account_event_counts,
    produce,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_kill_one_of_two_workers_then_a_third_joins(
    service_settings: Settings, tmp_path: Path
) -> None:
    settings = service_settings.with_overrides(kafka={"poll_max_records": 50})
    config = write_config(settings, tmp_path)
    events = generate(BasicTraffic(benign_accounts=30, hours=2.0, seed=9))
    expected = dict(collections.Counter(e["account_id"] for e in events))
    third = len(events) // 3

    def applied() -> int:
        return sum(account_event_counts(settings).values())

    first, second = start_worker(config), start_worker(config)
    joiner = None
    try:
        produce(settings, events[:third])
        wait_until(lambda: applied() >= third // 2, 60, "both workers consuming")
        first.send_signal(signal.SIGKILL)  # mid-stream, holding uncommitted batches
        first.wait()
        produce(settings, events[third : 2 * third])
        wait_until(
            lambda: applied() >= 2 * third,
            90,
            "the survivor takes over the dead worker's partition",
        )
        joiner = start_worker(config)
        produce(settings, events[2 * third :])
        wait_until(lambda: applied() >= len(events), 90, "all events after the newcomer joined")
        assert account_event_counts(settings) == expected
    finally:
        for worker in (first, second, joiner):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(30)
