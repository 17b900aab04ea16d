"""A record whose processing raises, on the real broker and Redis: it is dead-lettered with
reason ``processing_error`` and the exception's class, and every other event is applied
exactly once, through the service and through replay.

The failure is injected into the per-event step (``apply_event``), standing for a bug that
some input reaches; that needs the interpreted pipeline (a compiled one binds its calls).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector import native
from detector import pipeline as pipeline_module
from detector.app import replay
from detector.config import Settings
from detector.features import EventFeatures
from detector_lab.sim.basic import BasicTraffic, generate
from tests.integration.helpers import TopicReader, account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        "detector.pipeline" in dict(native.extensions()),
        reason="injects a failure into the interpreted pipeline (`make uncompiled`)",
    ),
]

TRAFFIC = BasicTraffic(benign_accounts=10, hours=1.0, abusive_per_hour=300.0, seed=3)
POISON_EVERY = 97


class Bug(Exception):
    """Stands for whatever a record nobody foresaw makes our code raise."""


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pipeline_module.apply_event

    def apply_event(state: Any, feat: EventFeatures, settings: Any) -> Any:
        if feat.event_id.startswith("poison-"):
            raise Bug
        return real(state, feat, settings)

    monkeypatch.setattr(pipeline_module, "apply_event", apply_event)


def _traffic() -> tuple[list[dict[str, Any]], collections.Counter[str]]:
    """Events, every ``POISON_EVERY``-th one poisoned; and the unpoisoned count per account."""
    events = generate(TRAFFIC)
    for i in range(0, len(events), POISON_EVERY):
        events[i] = {**events[i], "event_id": f"poison-{i}"}
    good = collections.Counter(
        e["account_id"] for e in events if not e["event_id"].startswith("poison-")
    )
    return events, good


@pytest.mark.usefixtures("poisoned")
def test_the_service_dead_letters_what_raises_and_applies_the_rest_once(
    service_settings: Settings,
) -> None:
    events, good = _traffic()
    poison = len(events) - good.total()
    with RunningService(service_settings) as service:
        produce(service_settings, events)
        wait_until(
            lambda: (
                service.metric("detector_events_invalid_total", {"reason": "processing_error"})
                >= poison
                and service.metric("detector_events_applied_total") >= good.total()
            ),
            90,
            "every record processed or dead-lettered",
        )
        assert service.metric("detector_batch_failures_total", {"error": "Bug"}) >= 2 * poison
        assert service.get("/readyz")[0] == 200
    assert account_event_counts(service_settings) == good
    reader = TopicReader(service_settings, service_settings.kafka.dlq_topic)
    letters = reader.read_to_end(30, "dead letters")
    reader.close()
    headers = [dict(m.headers) for m in letters]
    assert sorted(orjson.loads(m.value)["event_id"] for m in letters) == sorted(
        e["event_id"] for e in events if e["event_id"].startswith("poison-")
    )
    assert {(h["dlq.reason"], h["dlq.error"]) for h in headers} == {(b"processing_error", b"Bug")}


@pytest.mark.usefixtures("poisoned")
def test_replay_dead_letters_what_raises_with_its_line_and_goes_on(tmp_path: Path) -> None:
    events, good = _traffic()
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = tmp_path / "alerts.jsonl"
    report = replay(Settings().with_overrides(kafka={"poll_max_records": 200}), events_file, out)
    assert report.events == len(events)
    assert report.invalid == len(events) - good.total()
    letters = [orjson.loads(line) for line in out.with_suffix(".dead-letters.jsonl").open("rb")]
    poisoned_lines = {i + 1 for i, e in enumerate(events) if e["event_id"].startswith("poison-")}
    assert {d["line"] for d in letters} == poisoned_lines
    assert {(d["reason"], d["error"]) for d in letters} == {("processing_error", "Bug")}
