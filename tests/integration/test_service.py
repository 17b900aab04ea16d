"""The service end to end through the real broker and Redis."""

from __future__ import annotations

import collections
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detector.app import replay, run_service
from detector.config import Settings
from detector.contract import ALERT_SCHEMA, validator
from detector_lab.sim.basic import BasicTraffic, generate
from tests.integration.helpers import TopicReader, account_event_counts, produce, wait_until

pytestmark = pytest.mark.integration

TRAFFIC = BasicTraffic(benign_accounts=25, hours=2.0, abusive_per_hour=500.0, seed=11)
BAD = [
    b"{not json",
    b'"a string"',
    b'{"event_id": "x", "ts": "noon", "account_id": "a", "model": "m"}',
]


class RunningService:
    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.stop = threading.Event()
        self.ports: list[int] = []
        self.thread = threading.Thread(
            target=run_service,
            args=(settings, self.stop, self.registry),
            kwargs={"on_started": self.ports.append},
            daemon=True,
        )

    def __enter__(self) -> RunningService:
        self.thread.start()
        wait_until(lambda: self.ports, 10, "the metrics server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the service did not stop on request"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[0]}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@pytest.fixture
def events() -> list[dict]:
    return generate(TRAFFIC)


@pytest.fixture
def service(service_settings: Settings) -> Iterator[RunningService]:
    with RunningService(service_settings) as running:
        yield running


def test_abusive_account_alerted_invalid_to_dead_letters(
    service: RunningService, service_settings: Settings, events: list[dict]
) -> None:
    k = service_settings.kafka
    produce(service_settings, events, BAD)
    per_account = collections.Counter(e["account_id"] for e in events)

    def done() -> bool:
        # Counted in Redis means written, and a batch's alerts and dead letters are
        # acknowledged by the broker before its state is written.
        consumed = service.metric("detector_events_consumed_total")
        return consumed >= len(events) + len(BAD) and account_event_counts(service_settings) == (
            dict(per_account)
        )

    wait_until(done, 60, "every event counted in Redis")

    alerts_reader = TopicReader(service_settings, k.alerts_topic)
    alerts = [orjson.loads(m.value) for m in alerts_reader.read_to_end(20, "alerts")]
    alerts_reader.close()
    check = validator(ALERT_SCHEMA)
    for alert in alerts:
        check(alert)
    flagged = {a["subject_id"] for a in alerts if a["severity"] in ("medium", "high", "critical")}
    assert flagged == {TRAFFIC.abusive_account}
    assert all(m.key == TRAFFIC.abusive_account.encode() for m in alerts_reader.messages)

    dlq = TopicReader(service_settings, k.dlq_topic)
    letters = wait_until(lambda: len(dlq.read()) >= len(BAD) and dlq.messages, 20, "dead letters")
    dlq.close()
    reasons = sorted(dict(m.headers)["dlq.reason"].decode() for m in letters)
    assert reasons == ["invalid_json", "not_object", "wrong_type"]
    assert sorted(m.value for m in letters) == sorted(BAD)  # nothing lost: original bytes kept
    assert service.metric("detector_events_invalid_total", {"reason": "not_object"}) == 1

    assert service.get("/healthz")[0] == 200
    assert service.get("/readyz")[0] == 200
    status, text = service.get("/metrics")
    assert status == 200 and "detector_batch_duration_seconds_bucket" in text
    assert TRAFFIC.abusive_account not in text  # no account id in metrics
    assert (
        service.metric("detector_alerts_total", {"type": "volume_spike", "severity": "high"}) >= 1
    )
    lags = [
        service.metric(
            "detector_consumer_lag_messages", {"topic": k.input_topic, "partition": str(p)}
        )
        for p in range(k.topic_partitions)
    ]
    assert lags == [0.0] * k.topic_partitions  # exported per partition, and the backlog is drained


def test_second_consumer_group_over_same_events_counts_nothing_twice(
    service_settings: Settings, events: list[dict]
) -> None:
    """All events redelivered from offset 0 (a new group, the same state): every one is a duplicate."""
    produce(service_settings, events[: len(events) // 2])
    with RunningService(service_settings) as first:
        wait_until(
            lambda: first.metric("detector_events_applied_total") >= len(events) // 2,
            60,
            "first half",
        )
    produce(service_settings, events[len(events) // 2 :])
    again = service_settings.with_overrides(
        kafka={"group_id": service_settings.kafka.group_id + "-again"}
    )
    with RunningService(again) as second:
        wait_until(
            lambda: (
                second.metric("detector_events_duplicate_total")
                + second.metric("detector_events_applied_total")
                >= len(events)
            ),
            60,
            "every event applied or found a duplicate",
        )
        assert second.metric("detector_events_duplicate_total") == len(events) // 2
        assert second.metric("detector_events_applied_total") == len(events) - len(events) // 2
    assert account_event_counts(service_settings) == dict(
        collections.Counter(e["account_id"] for e in events)
    )


def test_lag_is_exported_only_for_the_partitions_a_worker_holds(
    service_settings: Settings, events: list[dict]
) -> None:
    """After a rebalance a worker drops the lag of the partition it gave up: the dashboard
    sums the lag over workers, and a value nobody updates would never go down."""
    k = service_settings.kafka
    every = set(range(k.topic_partitions))

    def lagged(service: RunningService) -> set[int]:
        labels = ({"topic": k.input_topic, "partition": str(p)} for p in every)
        return {
            int(found["partition"])
            for found in labels
            if service.registry.get_sample_value("detector_consumer_lag_messages", found)
            is not None
        }

    produce(service_settings, events)
    with RunningService(service_settings) as one:
        wait_until(lambda: lagged(one) == every, 60, "the only worker's lag of every partition")
        with RunningService(service_settings) as two:
            wait_until(
                lambda: all(w.metric("detector_assigned_partitions") == 1 for w in (one, two)),
                60,
                "the group to give each worker one of the two partitions",
            )
            produce(service_settings, events)  # redelivered as duplicates: records to poll
            wait_until(
                lambda: lagged(one) | lagged(two) == every and not lagged(one) & lagged(two),
                60,
                "each partition's lag exported by its owner only",
            )


def test_replay_gives_the_same_alerts_as_the_stream(
    service_settings: Settings, events: list[dict], tmp_path: Path
) -> None:
    one_partition = service_settings.with_overrides(kafka={"topic_partitions": 1})
    produce(one_partition, events)
    with RunningService(one_partition) as running:
        wait_until(
            lambda: running.metric("detector_events_applied_total") >= len(events), 60, "all events"
        )
    reader = TopicReader(one_partition, one_partition.kafka.alerts_topic)
    streamed = reader.read_to_end(20, "alerts")
    reader.close()

    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = tmp_path / "alerts.jsonl"
    report = replay(Settings().with_overrides(kafka={"poll_max_records": 333}), events_file, out)
    assert report.events == len(events) and report.invalid == 0

    def key(a: dict) -> tuple:
        return a["alert_id"], a["type"], a["severity"], a["ts"], a["event_count"]

    replayed = sorted(key(orjson.loads(line)) for line in out.read_bytes().splitlines())
    assert replayed == sorted(key(orjson.loads(m.value)) for m in streamed)
