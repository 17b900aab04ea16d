"""`detector tap` against the real broker: events over HTTP arrive on the topic, bad input is
refused with a reason, and a full buffer answers 429. Outages under load:
test_tap_outage.py."""

from __future__ import annotations

import importlib.util
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.embedded import EmbeddedKafka
from detector.io.kafka import ensure_topics
from detector.programs.tap import EVENTS_PATH, run_tap
from tests.integration.helpers import TopicReader, wait_until
from tests.tools import DEPLOY

pytestmark = pytest.mark.integration

NDJSON = "application/x-ndjson"


def _event(i: int, account: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"tap-{i}", "ts": 1_767_225_600.0 + i, "account_id": account or f"acct-{i % 7}",
        "model": "m", "prompt": f"Summarise ticket {i} politely.", "input_tokens": 20, **extra,
    }  # fmt: skip


def _lines(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


class RunningTap:
    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.stop = threading.Event()
        self.ports: list[tuple[int, int]] = []
        self.thread = threading.Thread(
            target=run_tap,
            args=(settings, self.stop, self.registry),
            kwargs={"on_started": lambda events, metrics: self.ports.append((events, metrics))},
            daemon=True,
        )

    def __enter__(self) -> RunningTap:
        self.thread.start()
        wait_until(lambda: self.ports, 30, "the tap to listen")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the tap did not stop on request"

    def post(self, body: bytes, ctype: str = NDJSON) -> tuple[int, dict[str, Any], Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports[0][0]}{EVENTS_PATH}",
            data=body,
            headers={"Content-Type": ctype},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, orjson.loads(reply.read()), reply.headers
        except urllib.error.HTTPError as e:
            return e.code, orjson.loads(e.read()), e.headers

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


def _settled(tap: RunningTap) -> float:
    return tap.metric("detector_tap_events_delivered_total") + tap.metric(
        "detector_tap_events_failed_total"
    )


@pytest.fixture
def tap_settings(service_settings: Settings) -> Settings:
    return service_settings.with_overrides(tap={"port": 0})


def test_events_posted_over_http_arrive_on_the_topic_keyed_by_account(
    tap_settings: Settings,
) -> None:
    events = [_event(i) for i in range(300)]
    with RunningTap(tap_settings) as tap:
        for start in range(0, 280, 40):  # JSON lines, 40 events a request
            status, body, _ = tap.post(_lines(events[start : start + 40]))
            assert (status, body) == (202, {"accepted": 40})
        for e in events[280:]:  # and single events
            assert tap.post(orjson.dumps(e), "application/json")[0] == 202
        wait_until(lambda: tap.metric("detector_tap_events_delivered_total") >= 300, 30, "acks")
        assert tap.metric("detector_tap_buffer_events") == 0
    reader = TopicReader(tap_settings, tap_settings.kafka.input_topic)
    got = wait_until(lambda: len(reader.read()) >= 300 and reader.messages, 30, "300 records")
    reader.close()
    by_id = {orjson.loads(m.value)["event_id"]: m for m in got}
    assert set(by_id) == {e["event_id"] for e in events}
    for e in events:
        m = by_id[e["event_id"]]
        assert m.key == e["account_id"].encode()
        assert orjson.loads(m.value) == e
    # One account's events stay in one partition, in the order they were posted.
    partitions = {m.key: set() for m in got}
    for m in got:
        partitions[m.key].add(m.partition)
    assert all(len(p) == 1 for p in partitions.values())


def test_bad_input_is_refused_with_a_reason_and_nothing_of_it_arrives(
    tap_settings: Settings,
) -> None:
    good = _event(1, account="acct-x")
    with RunningTap(tap_settings) as tap:
        mixed = _lines([good]) + b'{"event_id": "e", "ts": -5, "account_id": "acct-x"}\n'
        status, body, _ = tap.post(mixed)
        assert status == 400
        [problem] = body["problems"]
        assert problem["line"] == 2 and problem["reason"] == "missing_field"
        assert "model" in problem["detail"]
        status, body, _ = tap.post(b"{oops", "application/json")
        assert status == 400 and body["problems"][0]["reason"] == "invalid_json"
        status, body, _ = tap.post(b"event_id=1", "application/x-www-form-urlencoded")
        assert status == 415 and "application/json" in body["error"]
        big = orjson.dumps(_event(2, prompt="x" * (tap_settings.tap.max_event_bytes + 1)))
        assert tap.post(big, "application/json")[0] == 413
        base = f"http://127.0.0.1:{tap.ports[0][0]}"
        for request, code in (
            (urllib.request.Request(f"{base}/v2/other", data=b"{}", method="POST"), 404),
            (urllib.request.Request(f"{base}{EVENTS_PATH}"), 405),
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == code and orjson.loads(refused.value.read())["error"]
        marker = _event(3, account="acct-x")  # same account: same partition, after the above
        assert tap.post(orjson.dumps(marker), "application/json")[0] == 202
        reader = TopicReader(tap_settings, tap_settings.kafka.input_topic)
        got = wait_until(reader.read, 30, "the marker event")
        reader.close()
    assert [orjson.loads(m.value)["event_id"] for m in got] == ["tap-3"]
    assert tap.metric("detector_tap_requests_total", {"code": "400"}) == 2
    assert tap.metric("detector_tap_requests_total", {"code": "404"}) == 1
    assert tap.metric("detector_tap_requests_total", {"code": "405"}) == 1
    assert tap.metric("detector_tap_events_refused_total", {"reason": "missing_field"}) == 1


def test_full_buffer_answers_429_then_recovers_when_the_broker_returns(
    tap_settings: Settings,
) -> None:
    broker = EmbeddedKafka().start()  # a broker of its own, to stop
    try:
        settings = tap_settings.with_overrides(
            kafka={"bootstrap_servers": broker.bootstrap_servers},
            tap={
                "buffer_max_events": 50,
                "retry_after_s": 2,
                "ack_timeout_ms": 300,
                "delivery_timeout_ms": 8000,
            },
        )
        with RunningTap(settings) as tap:
            assert tap.post(_lines([_event(0)]))[0] == 202  # acknowledged, so delivered
            assert tap.metric("detector_tap_events_delivered_total") == 1
            broker.kill()
            codes = []
            for i in range(8):  # 10 events a request: the sixth no longer fits in 50
                status, body, headers = tap.post(
                    _lines([_event(100 + 10 * i + j) for j in range(10)])
                )
                codes.append(status)
                assert headers["Retry-After"] == "2"
                if status == 429:
                    assert "buffer full" in body["error"]
                else:  # each request, one at a time, finds out whether the broker is back
                    assert (
                        "kafka unavailable" in body["error"] and "ack_timeout_ms" in body["error"]
                    )
            # Nothing acknowledged, so nothing answered 202; the unacknowledged events stay
            # in the producer, bounded.
            assert codes == [503] * 5 + [429] * 3, codes
            assert tap.metric("detector_tap_buffer_events") == 50  # bounded: never more
            assert tap.metric("detector_tap_events_refused_total", {"reason": "buffer_full"}) == 30
            assert tap.metric("detector_tap_events_accepted_total") == 1
            broker.start()  # same port, empty: the waiting events are delivered or given up
            ensure_topics(settings.kafka)
            # The buffer is released before the outcome is counted: wait for both.
            wait_until(
                lambda: tap.metric("detector_tap_buffer_events") == 0 and _settled(tap) >= 51,
                60,
                "a drained buffer, every event delivered or given up",
            )
            assert _settled(tap) == 51
            assert wait_until(
                lambda: tap.post(_lines([_event(999)]))[0] == 202 or None, 30, "202 again", 1.0
            )
    finally:
        broker.stop()


def test_unreachable_broker_answers_503_with_retry_after(tap_settings: Settings) -> None:
    broker = EmbeddedKafka().start()
    try:
        settings = tap_settings.with_overrides(
            kafka={"bootstrap_servers": broker.bootstrap_servers, "create_topics": False},
            tap={"send_timeout_ms": 500},
        )
        with RunningTap(settings) as tap:
            broker.kill()  # before the producer could learn where the (new) topic lives
            status, body, headers = tap.post(_lines([_event(1), _event(2)]))
            assert status == 503 and headers["Retry-After"] == "1"
            assert "kafka unavailable" in body["error"] and "retry" in body["error"]
            assert (
                tap.metric("detector_tap_events_refused_total", {"reason": "kafka_unavailable"})
                == 2
            )
            assert (
                tap.metric("detector_tap_buffer_events") == 0
            )  # nothing held for a refused request
    finally:
        broker.stop()


def test_compose_demo_traffic_source_delivers_through_the_tap(tap_settings: Settings) -> None:
    """deploy/compose/traffic.py, the Compose stack's traffic source, against a real tap."""
    spec = importlib.util.spec_from_file_location("traffic", DEPLOY / "compose" / "traffic.py")
    assert spec and spec.loader
    traffic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(traffic)
    events = list(traffic.restamp([_event(i) for i in range(120)], 1, time.time()))
    with RunningTap(tap_settings) as tap:
        url = f"http://127.0.0.1:{tap.ports[0][0]}"
        assert traffic.send(url, events, rate=10_000.0, batch=50) == 120
        wait_until(lambda: tap.metric("detector_tap_events_delivered_total") >= 120, 30, "acks")
    reader = TopicReader(tap_settings, tap_settings.kafka.input_topic)
    got = wait_until(lambda: len(reader.read()) >= 120 and reader.messages, 30, "120 records")
    reader.close()
    assert {orjson.loads(m.value)["event_id"] for m in got} == {e["event_id"] for e in events}
    assert all(m.key.endswith(b"~r1") for m in got)
