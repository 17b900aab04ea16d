"""A worker killed with SIGKILL mid-stream and restarted counts every event exactly once."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detector.config import Settings
from detector.sim.basic import BasicTraffic, generate
from tests.integration.helpers import account_event_counts, produce, wait_until

pytestmark = pytest.mark.integration


def _start_worker(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR__")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detector.cli",
            "--log-level",
            os.environ.get("WORKER_LOG_LEVEL", "warning"),
            "run",
            "--config",
            str(config),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("WORKER_LOG", os.devnull), "ab"),
    )


def test_sigkill_mid_stream_then_restart_counts_each_event_once(
    service_settings: Settings, tmp_path: Path
) -> None:
    settings = service_settings.with_overrides(kafka={"poll_max_records": 50})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    events = generate(BasicTraffic(benign_accounts=30, hours=2.0, seed=5))
    expected = dict(collections.Counter(e["account_id"] for e in events))
    n = len(events)
    chunks = [events[i * n // 3 : (i + 1) * n // 3] for i in range(3)]

    applied = 0
    for kill_round, chunk in enumerate(chunks):
        worker = _start_worker(config)
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

    worker = _start_worker(config)
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
