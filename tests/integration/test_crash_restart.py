"""Workers killed with SIGKILL at random points mid-stream end where an uninterrupted run ends.

Both runs consume the same topic (one partition, so the shared models see the events
in one order) as separate consumer groups with separate key prefixes and alert topics.
The model checkpoint is written with every batch's state, which is what makes even the
anomaly model's alerts identical after a crash (see README, "Guarantees").

The workers' warnings go to ``workers.log`` in the test's directory (or to ``$WORKER_LOG``):
a batch retried after an error (Redis or Kafka away, or an exception) teaches the shared
models its events again, so a failure names how many batches were retried.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from detector.config import Settings
from detector_lab.sim.generate import simulate
from detector_lab.sim.scenario import load_scenario
from tests.integration.helpers import (
    TopicReader,
    account_event_counts,
    account_values,
    produce,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

KILLS = 5
DISTINCT = 12  # position of the distinct-value sketches in a stored account state
SEED = int(os.environ.get("CRASH_TEST_SEED", "20261123"))


def _run(
    settings: Settings, tmp_path: Path, name: str, total: int, kills: int, rng: random.Random
) -> list[dict[str, Any]]:
    run = settings.with_overrides(
        redis={"key_prefix": f"{settings.redis.key_prefix}{name}:"},
        kafka={"group_id": f"{settings.kafka.group_id}-{name}", "alerts_topic": f"a-{name}-{SEED}"},
    )
    run_dir = tmp_path / name
    run_dir.mkdir()
    config = write_config(run, run_dir)
    applied = 0
    for kill in range(kills):
        worker = start_worker(config)
        try:
            # Some progress first, then a random moment: before, during or after a batch's writes.
            wait_until(
                lambda a=applied: sum(account_event_counts(run).values()) > a,
                60,
                f"progress before kill {kill}",
                every_s=0.05,
            )
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        applied = sum(account_event_counts(run).values())
        assert applied < total, f"the stream ended before kill {kill}: make it longer"
    worker = start_worker(config)
    try:
        wait_until(
            lambda: sum(account_event_counts(run).values()) >= total, 120, f"{name}: all events"
        )
    finally:
        worker.terminate()
        assert worker.wait(30) == 0, "worker did not stop cleanly on SIGTERM"
    reader = TopicReader(run, run.kafka.alerts_topic)
    alerts = [orjson.loads(m.value) for m in reader.read_to_end(20, f"{name}: alerts")]
    reader.close()
    return alerts


def _account_state(settings: Settings, name: str) -> dict[str, Any]:
    """Every account's stored value in one run, its distinct-value sketches made canonical."""
    prefix = f"{settings.redis.key_prefix}{name}:"
    values = account_values(settings.with_overrides(redis={"key_prefix": prefix}))
    out = {}
    for account, value in values.items():
        mark, _, body = value.partition(b";")
        fields = msgpack.unpackb(body)
        fields[DISTINCT] = [_canonical_sketch(b) for b in fields[DISTINCT]]
        out[account] = (mark, fields)
    return out


def _canonical_sketch(blob: bytes) -> bytes:
    """A small HLL image (list or set of 4-byte coupons) lists its coupons in the order of
    its hash table, which depends on where batches began; the coupons themselves must match."""
    if not blob or blob[0] not in (2, 3):  # preamble ints: 2 list, 3 set, else registers
        return blob
    head = 4 * blob[0]
    coupons = sorted(blob[i : i + 4] for i in range(head, len(blob), 4))
    return blob[:head] + b"".join(coupons)


def _account_alerts(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    # A member alert names its campaign, whose id depends on how events fell into batches.
    return {
        (a["alert_id"], a["subject_id"], a["type"], a["severity"])
        for a in alerts
        if a["subject_type"] == "account" and a["type"] != "coordinated_cluster"
    }


def _retried(log: Path) -> str:
    """How many batch retries the workers logged, for a failure's message."""
    text = log.read_text(errors="replace") if log.exists() else ""
    # Retries after an outage (detector.service), and of a batch that raised (isolation).
    retries = text.count("; retrying in ") + text.count(" (try 1 of ")
    return f"{retries} retried batches in {log}"


def test_sigkill_at_random_points_ends_like_an_uninterrupted_run(
    service_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Path(os.environ.get("WORKER_LOG") or tmp_path / "workers.log")
    monkeypatch.setenv("WORKER_LOG", str(log))
    settings = service_settings.with_overrides(
        kafka={"topic_partitions": 1, "poll_max_records": 250},
        anomaly={"checkpoint_every_batches": 1},
    )
    events = simulate(load_scenario("ci")).events  # long enough for 5 kills at full speed
    produce(settings, events)
    rng = random.Random(SEED)

    reference = _run(settings, tmp_path, "whole", len(events), 0, rng)
    crashed = _run(settings, tmp_path, "crashed", len(events), KILLS, rng)

    whole_state = _account_state(settings, "whole")
    assert len(whole_state) > 100
    assert _account_state(settings, "crashed") == whole_state, f"seed {SEED}, {_retried(log)}"

    expected = _account_alerts(reference)
    assert {t for _, _, t, _ in expected} >= {"capability_harvest", "anomaly"}
    assert _account_alerts(crashed) == expected, f"seed {SEED}, {_retried(log)}"

    # Groups are seeded when a value's holders cross a count, so where batches began decides
    # a little of who is seeded with whom, and a restarted worker rebuilds its background:
    # members match closely, not exactly (the account states above match exactly).
    members = {a["subject_id"] for a in reference if a["type"] == "coordinated_cluster"}
    assert members, "the scenario's campaigns must be found for this test to mean anything"
    again = {a["subject_id"] for a in crashed if a["type"] == "coordinated_cluster"}
    assert len(members & again) >= 0.9 * len(members | again), f"seed {SEED}"
