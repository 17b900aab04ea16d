"""A backlog of 150,000 events is drained with bounded memory, and the lag shows in metrics."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from detector.config import Settings
from detector.embedded import free_port
from tests.integration.helpers import (
    account_event_counts,
    produce,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

BACKLOG = 150_000
ACCOUNTS = 500


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0  # not listening yet
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads worker memory from /proc")
def test_backlog_drains_with_flat_memory_and_visible_lag(
    service_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    settings = service_settings.with_overrides(metrics={"port": port})
    events = (
        {"event_id": f"b{i}", "ts": 1_767_225_600.0 + i * 0.5, "account_id": f"acct-{i % ACCOUNTS}",
         "model": "m", "prompt": f"Summarise ticket {i} about a delayed parcel, politely.", "input_tokens": 20,
         "output_tokens": 80}
        for i in range(BACKLOG)
    )  # fmt: skip
    produce(settings, events)  # the whole backlog is waiting before the worker starts
    worker = start_worker(write_config(settings, tmp_path))
    try:
        wait_until(
            lambda: _metric(port, "detector_consumer_lag_messages") > 10_000, 60, "lag reported"
        )
        wait_until(
            lambda: _metric(port, "detector_events_applied_total") >= BACKLOG // 4, 120, "a quarter"
        )
        early = _rss_kib(worker.pid)
        wait_until(
            lambda: _metric(port, "detector_events_applied_total") >= BACKLOG,
            300,
            "the whole backlog",
        )
        late = _rss_kib(worker.pid)
        print(f"worker RSS {early} KiB at a quarter, {late} KiB at the end")
        assert _metric(port, "detector_consumer_lag_messages") == 0
        # Three quarters more events must not grow the worker by more than a quarter.
        assert late < early * 1.25, f"RSS grew from {early} KiB to {late} KiB"
    finally:
        worker.terminate()
        worker.wait(30)
    assert sum(account_event_counts(settings).values()) == BACKLOG
