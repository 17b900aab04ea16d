"""A record whose processing raises, on the real broker and Redis: it is dead-lettered with
reason ``processing_error`` and the exception's class, and every other event is applied
exactly once, through the service and through replay. A batch processed again teaches the
shared models each event once, and a dead letter is delivered once when its delivery is
retried.

The failure is injected into the per-event step (``apply_event``), standing for a bug that
some input reaches; that needs the interpreted pipeline (a compiled one binds its calls).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

from detector import native
from detector import pipeline as pipeline_module
from detector.app import build_pipeline, replay
from detector.config import Settings
from detector.errors import KafkaUnavailable, RedisUnavailable
from detector.events import RawRecord
from detector.features import EventFeatures
from detector.isolation import process_isolating
from detector.metrics import Metrics
from detector.pipeline import Pipeline
from detector_lab.sim.basic import BasicTraffic, generate
from tests.integration.helpers import TopicReader, account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = pytest.mark.integration
interpreted = pytest.mark.skipif(
    "detector.pipeline" in dict(native.extensions()),
    reason="injects a failure into the interpreted pipeline (`make uncompiled`)",
)

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


@interpreted
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


@interpreted
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


# A batch tried again teaches the shared models each event once, and a dead letter whose
# delivery failed is delivered once when the worker retries. On the pipeline, with a real Redis.


class Outputs:
    """Stands in for the producer, per topic: what it holds and what it delivered. A flush that
    fails (``failures`` times) drops what it held, as kafka-python's does when deliveries fail."""

    def __init__(self) -> None:
        self.held: list[Any] = []
        self.delivered: list[Any] = []
        self.failures = 0

    def send(self, items: list[Any]) -> None:
        self.held.extend(items)

    def flush(self) -> None:
        held, self.held = self.held, []
        if self.failures:
            self.failures -= 1
            raise KafkaUnavailable("kafka: 1 messages not delivered")
        self.delivered += held


def _pipeline(
    settings: Settings, client: redis.Redis, prefix: str, letters: Outputs | None = None
) -> Pipeline:
    local = settings.with_overrides(
        redis={"key_prefix": f"{settings.redis.key_prefix}{prefix}:"},
        # The models learn often, from the first batches on: a relearned event shows.
        anomaly={"every_events": 2},
        behaviour={"min_events": 3},
    )
    return build_pipeline(
        local, client, Outputs(), letters or Outputs(), Metrics(CollectorRegistry())
    )


def _records(events: list[dict[str, Any]]) -> list[RawRecord]:
    return [RawRecord("q", 0, i, None, orjson.dumps(e)) for i, e in enumerate(events)]


def _learned(pipeline: Pipeline) -> tuple[int, int, int]:
    """How many snapshots each shared model learned: anomaly model, volume and behaviour baselines."""
    suite = pipeline.suite
    return suite.anomaly.learned, suite.baseline.samples, suite.behaviour_baselines.samples


def _run(pipeline: Pipeline, records: list[RawRecord], size: int = 200) -> None:
    for start in range(0, len(records), size):
        batch = records[start : start + size]
        result = process_isolating(batch, pipeline.process, pipeline.reject, pipeline.metrics)
        assert result is not None
    pipeline.flush()
    pipeline.close()


LEARNING = BasicTraffic(benign_accounts=10, hours=3.0, abusive_per_hour=300.0, seed=3)


@interpreted
@pytest.mark.usefixtures("poisoned")
def test_a_batch_split_around_what_raises_teaches_the_models_each_event_once(
    redis_settings: Settings, client: redis.Redis
) -> None:
    events = generate(LEARNING)
    for i in range(150, len(events), 400):  # after some of its batch was learned
        events[i] = {**events[i], "event_id": f"poison-{i}"}
    clean = _pipeline(redis_settings, client, "clean")
    _run(clean, _records([e for e in events if not e["event_id"].startswith("poison-")]))
    assert min(_learned(clean)) > 0, "the traffic must teach every model for this to mean anything"
    isolated = _pipeline(redis_settings, client, "isolated")
    _run(isolated, _records(events))
    # The failing records raised before their event was learned: the models learned what a
    # run without them learned, every event once, in the same order.
    assert _learned(isolated) == _learned(clean)
    assert isolated.suite.checkpoint() == clean.suite.checkpoint()


def test_a_batch_retried_after_an_outage_in_its_link_teaches_the_models_each_event_once(
    redis_settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records(generate(LEARNING))
    clean = _pipeline(redis_settings, client, "clean")
    _run(clean, records)
    pipeline = _pipeline(redis_settings, client, "outage")
    assert pipeline.groups is not None
    link = pipeline.groups.run
    outages = iter([False, False, True])  # in the third batch's link

    def run(*args: Any) -> Any:
        if next(outages, False):  # Redis went away after the batch's events were applied
            raise RedisUnavailable("redis: ConnectionError")
        return link(*args)

    monkeypatch.setattr(pipeline.groups, "run", run)
    for start in range(0, len(records), 200):
        batch = records[start : start + 200]
        try:
            pipeline.process(batch)
        except RedisUnavailable:
            pipeline.process(batch)  # the worker's retry
    pipeline.flush()
    pipeline.close()
    assert _learned(pipeline) == _learned(clean)
    assert pipeline.suite.checkpoint() == clean.suite.checkpoint()


def test_dead_letters_retried_after_a_failed_delivery_go_out_once(
    redis_settings: Settings, client: redis.Redis
) -> None:
    letters = Outputs()
    pipeline = _pipeline(redis_settings, client, "reject", letters)
    records = _records(generate(TRAFFIC))
    waiting, rejected = records[:100], records[100:103]
    pipeline.process(waiting)  # its state is written with the next round trip
    letters.failures = 1  # the broker goes away while the rejected records' letters go out
    with pytest.raises(KafkaUnavailable):
        pipeline.reject(rejected, Bug())
    pipeline.reject(rejected, Bug())  # the worker's retry
    assert pipeline.flush().durable == waiting + rejected
    assert [d.record.offset for d in letters.delivered] == [r.offset for r in rejected]

    alone = records[103:105]  # rejected with no batch waiting: committed once delivered
    letters.failures = 1
    with pytest.raises(KafkaUnavailable):
        pipeline.reject(alone, Bug())
    assert pipeline.reject(alone, Bug()).durable == alone
    assert not pipeline.unwritten
    pipeline.close()
    assert [d.record.offset for d in letters.delivered] == [r.offset for r in rejected + alone]
