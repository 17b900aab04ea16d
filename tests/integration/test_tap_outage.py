"""`detector tap` across broker outages under load: it loses nothing it acknowledged.

Clients post events all along (and retry what is refused, as the tap asks). The broker is
frozen and thawed (a hung host: its state survives), then killed and started again. The
embedded broker keeps everything in memory, so it comes back empty: the tap's idempotent
producer id is unknown to it, which leaves kafka-python's producer in its fatal state for
good, and the tap must replace it; and its topics are gone, which the tap must create again
(nobody else does here). At the end, every event answered 202 must be on the topic.

The figures (events posted, acknowledged, refused and on the topic, by phase) are printed
with ``pytest -s`` and written to ``tap-outage-figures.json`` in the test's directory.

The restarted broker has also lost what it had acknowledged before the kill, which is the
broker's durability, not the tap's. So the events acknowledged before the kill are read from
the topic before it: the clients hold still for that moment (no request in flight, so each
request falls wholly before or after the kill), the reader catches up, the broker dies, and
the clients go on at once. The freeze has no such pause: requests hang mid-flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.embedded import EmbeddedKafka, free_port
from detector.errors import KafkaUnavailable
from detector.health import HealthServer
from detector.io.kafka import ensure_topics
from detector.programs import tap as tap_module
from detector.programs.tap import (
    Tap,
    TapHealth,
    close_producer,
    make_tap_producer,
    producer_failure,
)
from tests.integration.helpers import TopicReader, wait_until
from tests.integration.test_tap import NDJSON, RunningTap, _event, _lines
from tests.tools import http_get

pytestmark = pytest.mark.integration

CLIENTS = 4
REFUSED_PAUSE_S = 0.1  # a test client retries sooner than Retry-After, to post more often


class Load:
    """Clients that post continuously, each request new events or the retry of a refused one.

    Every answer is recorded with the phase it came in. ``hold`` stops the clients between
    requests and returns once none is in flight; ``release`` lets them go on.
    """

    def __init__(self, tap: RunningTap) -> None:
        self.tap = tap
        self.phase = "warm"
        self.answers: list[tuple[str, int, list[str]]] = []  # (phase, status, event ids)
        self.posted: set[str] = set()
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._go.set()
        self._busy = 0
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(c,), daemon=True) for c in range(CLIENTS)
        ]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._go.set()
        for t in self._threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a client hung"

    def hold(self) -> None:
        self._go.clear()
        wait_until(lambda: self._busy == 0, 30, "requests in flight to end")

    def release(self) -> None:
        self._go.set()

    def acked(self, phase: str | None = None) -> set[str]:
        with self._lock:
            return {i for p, s, ids in self.answers if s == 202 and phase in (None, p) for i in ids}

    def count(self, status: int, phase: str | None = None) -> int:
        with self._lock:
            return sum(1 for p, s, _ in self.answers if s == status and phase in (None, p))

    def _client(self, cid: int) -> None:
        n = 0
        events: list[dict[str, Any]] = []
        while not self._done.is_set():
            self._go.wait()
            with self._lock:
                self._busy += 1
            try:
                if not self._go.is_set() or self._done.is_set():  # held since the wait
                    continue
                if not events:  # alternately one event (application/json) and 10 as JSON lines
                    size = 1 if n % 2 else 10
                    events = [_event(0, account=f"acct-{cid}") for _ in range(size)]
                    for j, e in enumerate(events):
                        e["event_id"] = f"out-{cid}-{n}-{j}"
                    n += 1
                body, ctype = (
                    (orjson.dumps(events[0]), "application/json")
                    if len(events) == 1
                    else (_lines(events), "application/x-ndjson")
                )
                ids = [e["event_id"] for e in events]
                with self._lock:
                    self.posted.update(ids)
                try:
                    status = self.tap.post(body, ctype)[0]
                except OSError:  # no HTTP answer at all: recorded as 0, which fails the test
                    status = 0
                with self._lock:
                    self.answers.append((self.phase, status, ids))
                if status not in (429, 503):  # retried only when the tap asks for it
                    events = []
            finally:
                with self._lock:
                    self._busy -= 1
            if events:
                time.sleep(REFUSED_PAUSE_S)  # retried as it is: the same event ids


@pytest.fixture
def broker() -> Any:
    server = EmbeddedKafka().start()  # a broker of its own, to freeze and kill
    yield server
    server.stop()


def topic_partitions(broker: EmbeddedKafka) -> dict[str, int]:
    """The broker's topics and their partition counts. Only those listed are described:
    Tansu creates any topic a client asks about."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        names = admin.list_topics()
        return (
            {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)} if names else {}
        )
    finally:
        admin.close()


def test_nothing_acknowledged_is_lost_across_a_freeze_and_a_restart(
    service_settings: Settings, broker: EmbeddedKafka, tmp_path: Path
) -> None:
    settings = service_settings.with_overrides(
        kafka={"bootstrap_servers": broker.bootstrap_servers},
        tap={
            "port": 0,
            "ack_timeout_ms": 1000,
            "send_timeout_ms": 1000,
            "delivery_timeout_ms": 10_000,
        },
    )
    topic = settings.kafka.input_topic
    with RunningTap(settings) as tap:  # it creates the topic
        before = TopicReader(settings, topic)
        load = Load(tap).start()
        try:
            wait_until(lambda: len(load.acked("warm")) >= 300, 30, "events acknowledged")

            broker.freeze()  # hung: requests in flight wait, then 503; later ones 503 at once
            load.phase = "frozen"
            wait_until(lambda: load.count(503, "frozen") >= 10, 30, "refusals while frozen")
            broker.thaw()
            load.phase = "thawed"
            wait_until(lambda: len(load.acked("thawed")) >= 300, 30, "acknowledgements again")

            load.hold()
            acked_before_kill = load.acked()
            wait_until(
                lambda: acked_before_kill <= event_ids(before.read()),
                30,
                "every acknowledged event on the topic before the kill",
            )
            seen_before_kill = event_ids(before.messages)
            before.close()
            broker.kill()
            load.phase = "killed"
            load.release()
            wait_until(lambda: load.count(503, "killed") >= 10, 30, "refusals while killed")

            broker.start()  # same port, empty: no topic, the tap creates them again
            load.phase = "restarted"
            wait_until(lambda: len(load.acked("restarted")) >= 300, 45, "acknowledgements after")
            probes = f"http://127.0.0.1:{tap.ports[0][1]}"
            assert http_get(f"{probes}/healthz")[0] == 200
            # Readiness follows the deliveries once a second.
            wait_until(lambda: http_get(f"{probes}/readyz")[0] == 200, 10, "ready again")
        finally:
            load.stop()
    # Before a reader asks for the input topic (and Tansu creates it). The alerts and
    # dead-letter topics are not the tap's to write: only its own check made them again.
    # The input topic was asked for by the producer, and Tansu may have created it first.
    topics = topic_partitions(broker)
    k = settings.kafka
    assert {
        k.alerts_topic: k.topic_partitions,
        k.dlq_topic: k.topic_partitions,
    }.items() <= topics.items()
    after = TopicReader(settings, topic)
    on_topic_after = after.read_to_end(30, "the topic after the restart")
    after.close()
    seen_after = event_ids(on_topic_after)

    # Every request got an answer, and a valid one never a 4xx other than 429.
    assert {status for _, status, _ in load.answers} <= {202, 429, 503}
    # Each request fell wholly before the kill or after it (the clients held still).
    acked_after = load.acked("killed") | load.acked("restarted")
    assert acked_before_kill <= seen_before_kill, acked_before_kill - seen_before_kill
    assert acked_after <= seen_after, sorted(acked_after - seen_after)[:10]
    assert load.acked() == acked_before_kill | acked_after
    on_topic = seen_before_kill | seen_after
    assert on_topic <= load.posted  # nothing invented
    # Not vacuous: the outages happened and the tap refused during them, and the fatal
    # producer was replaced (a kafka-python that hid its state would fail here).
    assert load.count(503, "frozen") and load.count(503, "killed")
    assert tap.metric("detector_tap_producer_rebuilds_total") >= 1
    figures = outage_figures(load, on_topic, ids_of(before.messages) + ids_of(on_topic_after))
    figures["input_topic_partitions_after"] = topics.get(topic, 0)
    figures["rebuilds"] = tap.metric("detector_tap_producer_rebuilds_total")
    report = tmp_path / "tap-outage-figures.json"
    report.write_text(json.dumps(figures, indent=1))
    print(f"\ntap outage figures ({report}):\n{json.dumps(figures, indent=1)}")


def outage_figures(load: Load, on_topic: set[str], records: list[str]) -> dict[str, Any]:
    """Per phase: requests answered in it by status, the events of the requests answered 202
    and 503 (a retried event counts once per answer) and how many of those acknowledged are
    on the topic; then the totals. ``records``: the event id of every record read."""
    phases: dict[str, Any] = {}
    for phase in ("warm", "frozen", "thawed", "killed", "restarted"):
        answers = [(s, ids) for p, s, ids in load.answers if p == phase]
        acked = load.acked(phase)
        phases[phase] = {
            "requests": dict(sorted(Counter(str(s) for s, _ in answers).items())),
            "events_posted": len({i for _, ids in answers for i in ids}),
            "events_acknowledged": len(acked),
            "events_refused_503": sum(len(ids) for s, ids in answers if s == 503),
            "events_refused_429": sum(len(ids) for s, ids in answers if s == 429),
            "acknowledged_on_topic": len(acked & on_topic),
        }
    acked = load.acked()
    return {
        "phases": phases,
        "posted": len(load.posted),
        "acknowledged": len(acked),
        "acknowledged_on_topic": len(acked & on_topic),
        "never_acknowledged": len(load.posted - acked),  # refused, still retrying at the end
        "refused_but_on_topic": len((load.posted - acked) & on_topic),
        "on_topic": len(on_topic),
        "duplicate_records_on_topic": len(records) - len(set(records)),
    }


def ids_of(messages: list[Any]) -> list[str]:
    return [orjson.loads(m.value)["event_id"] for m in messages]


def event_ids(messages: list[Any]) -> set[str]:
    return set(ids_of(messages))


class NoTopicProducer:
    """kafka-python's producer when the broker does not know the topic and does not create
    the topics it is asked about (``auto.create.topics.enable=false``; Tansu always does):
    ``send`` waits tap.send_timeout_ms for the topic's partitions, then raises this."""

    _closed = False

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        raise KafkaTimeoutError("Failed to update metadata after 1.0 secs.")

    def close(self, timeout: float | None = None) -> None:
        pass


def test_topics_the_broker_does_not_know_are_created_as_at_start_up(
    service_settings: Settings, broker: EmbeddedKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings.with_overrides(
        kafka={"bootstrap_servers": broker.bootstrap_servers}
    )
    k = settings.kafka
    body = _lines([_event(1)])

    def tap(create_topics: Callable[[], None] | None) -> Tap:
        producer: Any = NoTopicProducer()
        return Tap(
            k, settings.tap, settings.features.max_future_s, producer, CollectorRegistry(),
            create_topics=create_topics,
        )  # fmt: skip

    without = tap(None)  # kafka.create_topics false: the topics are the operator's
    assert without.submit(NDJSON, body).status == 503
    without.maintain()
    assert topic_partitions(broker) == {}

    attempts: list[int] = []

    def create() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise KafkaUnavailable("no Kafka broker answers")  # the first attempt, say
        ensure_topics(k)

    creating = tap(create)
    creating.maintain()  # nothing in doubt yet: no admin client every second
    assert not attempts
    reply = creating.submit(NDJSON, body)
    assert reply.status == 503 and "no answer" in reply.body["error"]
    creating.maintain()
    creating.maintain()
    assert len(attempts) == 1 and topic_partitions(broker) == {}  # backing off
    monkeypatch.setattr(tap_module, "TOPICS_BACKOFF_MAX_S", 0.0)
    creating.maintain()
    assert topic_partitions(broker) == dict.fromkeys(
        (k.input_topic, k.alerts_topic, k.dlq_topic), k.topic_partitions
    )
    creating.maintain()
    assert len(attempts) == 2  # not again until a send finds no topic again


def test_a_producer_that_cannot_be_rebuilt_makes_the_tap_unhealthy(
    service_settings: Settings, broker: EmbeddedKafka
) -> None:
    settings = service_settings.with_overrides(
        kafka={"bootstrap_servers": broker.bootstrap_servers},
        tap={"ack_timeout_ms": 2000, "send_timeout_ms": 1000},
    )
    nowhere = settings.with_overrides(
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "bootstrap_timeout_ms": 500}
    )
    ensure_topics(settings.kafka)
    registry = CollectorRegistry()
    health = TapHealth()
    health_server = HealthServer("127.0.0.1", 0, registry, health).start()
    tap = Tap(
        settings.kafka,
        settings.tap,
        settings.features.max_future_s,
        make_tap_producer(settings.kafka, settings.tap),
        registry,
        rebuild=lambda: make_tap_producer(nowhere.kafka, settings.tap),
    )
    body = _lines([_event(1)])

    def healthz() -> tuple[int, bytes]:
        health.producer_ok = tap.healthy
        return http_get(f"http://127.0.0.1:{health_server.port}/healthz")

    try:
        assert tap.submit("application/x-ndjson", body).status == 202
        broker.kill()
        broker.start()  # empty: the producer's id means nothing to it
        ensure_topics(settings.kafka)
        wait_until(
            lambda: (
                tap.submit("application/x-ndjson", body).status == 503
                and tap.producer is not None
                and producer_failure(tap.producer)
            ),
            30,
            "the producer's fatal state",
        )
        assert healthz()[0] == 200
        tap.maintain()  # the rebuild cannot reach a broker
        assert tap.producer is None and not tap.healthy
        assert healthz() == (503, b"kafka producer failed and cannot be rebuilt: restart the tap\n")
        reply = tap.submit("application/x-ndjson", body)
        assert reply.status == 503 and reply.headers["Retry-After"] == "1"
        assert "rebuilding" in reply.body["error"]

        tap.rebuild = lambda: make_tap_producer(settings.kafka, settings.tap)

        def rebuilt() -> bool:
            tap.maintain()  # what the tick loop of run_tap does once a second
            return tap.producer is not None

        wait_until(rebuilt, 30, "a rebuilt producer", 0.5)
        assert healthz()[0] == 200
        # The gate lets one request at a time find out that the broker delivers again.
        wait_until(lambda: tap.submit("application/x-ndjson", body).status == 202, 30, "202 again")
        assert tap.readiness() == (True, "")
        assert registry.get_sample_value("detector_tap_producer_rebuilds_total") == 1
    finally:
        if tap.producer is not None:
            close_producer(tap.producer, 1)
        health_server.stop()
