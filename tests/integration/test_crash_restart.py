"""A worker killed with SIGKILL mid-stream and restarted counts every event exactly once."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import pytest

from detector.config import Settings
from detector.sim.basic import BasicTraffic, generate
from tests.integration.helpers import (
    account_event_counts,
    produce,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_stream_then_restart_counts_each_event_once(
    service_settings: Settings, tmp_path: Path
) -> None:
    settings = service_settings.with_overrides(kafka={"poll_max_records": 50})
    config = write_config(settings, tmp_path)
    events = generate(BasicTraffic(benign_accounts=30, hours=2.0, seed=5))
    expected = dict(collections.Counter(e["account_id"] for e in events))
    n = len(events)
    chunks = [events[i * n // 3 : (i + 1) * n // 3] for i in range(3)]

    applied = 0
    for kill_round, chunk in enumerate(chunks):
        worker = start_worker(config)
        try:
            produce(settings, chunk)
            target = applied + len(chunk) // 3
            # Kill as soon as part of this chunk is applied: some batches written, some not committed.
            wait_until(
                lambda t=target: sum(account_event_counts(settings).values()) >= t,
                60,
                f"part of chunk {kill_round} applied",
                every_s=0.02,
            )
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        applied += len(chunk)

    worker = start_worker(config)
    try:
        wait_until(
            lambda: sum(account_event_counts(settings).values()) >= len(events),
            90,
            "all events applied",
        )
        assert account_event_counts(settings) == expected
    finally:
        worker.terminate()
        assert worker.wait(30) == 0, "worker did not stop cleanly on SIGTERM"
