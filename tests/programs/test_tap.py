"""The tap's request checks, its bounded buffer, and its request path against a stub producer
(no services: nothing here reaches Kafka)."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from prometheus_client import CollectorRegistry

import detector.programs.tap as tap_module
from detector.config import Settings
from detector.programs.tap import (
    Acks,
    Buffer,
    Gate,
    Reply,
    Tap,
    TapHealth,
    check_events,
    split_body,
)

GOOD = {"event_id": "e1", "ts": 1_767_225_600.0, "account_id": "acct-1", "model": "m"}
NOW = 1_767_230_000.0


def _line(**fields: object) -> bytes:
    return orjson.dumps({**GOOD, **fields})


def test_json_lines_split_on_newlines_and_keep_blank_lines_visible() -> None:
    body = _line() + b"\r\n" + b"\n" + _line(event_id="e2") + b"\n"
    assert split_body(body, "application/x-ndjson") == [_line(), b"", _line(event_id="e2")]


def test_single_event_may_span_lines() -> None:
    pretty = orjson.dumps(GOOD, option=orjson.OPT_INDENT_2)
    assert split_body(pretty, "application/json; charset=utf-8") == [pretty]


@pytest.mark.parametrize("ctype", ["", "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_not_taken(ctype: str) -> None:
    assert split_body(_line(), ctype) is None


def test_valid_events_are_keyed_by_account_and_kept_byte_for_byte() -> None:
    lines = [_line(), _line(event_id="e2", account_id="acct-ü")]
    accepted, problems = check_events(lines, NOW, 10_000)
    assert problems == []
    assert accepted == [(b"acct-1", lines[0]), ("acct-ü".encode(), lines[1])]


def test_each_bad_line_gets_the_decoders_reason() -> None:
    lines = [
        _line(),
        b"{not json",
        b"",
        orjson.dumps({k: v for k, v in GOOD.items() if k != "account_id"}),
        _line(ts="noon"),
        _line(ts=NOW + 10 * 86400),
    ]
    accepted, problems = check_events(lines, NOW + 86400, 10_000)
    assert [a[1] for a in accepted] == [lines[0]]
    assert [(p.line, p.reason) for p in problems] == [
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "missing_field"),
        (5, "wrong_type"),
        (6, "ts_in_future"),
    ]
    assert "account_id" in problems[2].detail and "ts" in problems[3].detail


def test_an_oversized_event_is_refused_by_size_before_parsing() -> None:
    big = _line(prompt="x" * 2000)
    _, [problem] = check_events([big], NOW, 1000)
    assert problem.reason == "too_large" and "tap.max_event_bytes" in problem.detail


def test_refusals_never_echo_prompt_text() -> None:
    secret = "SECRET-PROMPT-TEXT"
    lines = [_line(prompt=secret, n_messages="two"), _line(prompt=secret, status=secret)]
    _, problems = check_events(lines, NOW, 10_000)
    assert len(problems) == 2
    assert all(secret not in p.detail for p in problems)


def test_buffer_takes_a_request_whole_or_not_at_all() -> None:
    b = Buffer(max_events=10, max_bytes=1000)
    assert b.reserve(8, 100)
    assert not b.reserve(3, 10)  # 11 events: none of the three is taken
    assert (b.events, b.bytes) == (8, 100)
    assert not b.reserve(1, 901)  # bytes bound too
    b.release(8, 100)
    assert b.reserve(10, 1000)


def test_buffer_bound_holds_under_concurrent_requests() -> None:
    b = Buffer(max_events=100, max_bytes=10**9)
    taken: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(200):
            if b.reserve(3, 1):
                with lock:
                    taken.append(3)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == b.events <= 100
    assert b.events > 100 - 3  # filled as far as whole requests fit


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tap(registry: CollectorRegistry) -> Tap:
    s = Settings().with_overrides(tap={"max_body_bytes": 4096, "max_event_bytes": 1024})
    # These requests are refused before anything reaches a producer, so none is needed.
    return Tap(s.kafka, s.tap, s.features.max_future_s, None, registry)  # type: ignore[arg-type]


def test_a_request_with_one_bad_line_is_refused_whole_with_every_reason(
    tap: Tap, registry: CollectorRegistry
) -> None:
    body = _line() + b"\n" + b"[1, 2]\n" + _line(event_id="") + b"\n"
    reply = tap.submit("application/x-ndjson", body)
    assert reply.status == 400
    assert reply.body["error"].startswith("2 of 3 events refused")
    assert [(p["line"], p["reason"]) for p in reply.body["problems"]] == [
        (2, "not_object"),
        (3, "too_short"),
    ]
    assert registry.get_sample_value("detector_tap_requests_total", {"code": "400"}) == 1
    sample = registry.get_sample_value
    assert sample("detector_tap_events_refused_total", {"reason": "not_object"}) == 1
    assert tap.buffer.events == 0


def test_wrong_content_type_is_415_and_names_the_accepted_ones(tap: Tap) -> None:
    reply = tap.submit("text/csv", b"a,b")
    assert reply.status == 415 and "application/x-ndjson" in reply.body["error"]


def test_oversized_body_and_events_are_413(tap: Tap) -> None:
    assert tap.submit("application/json", b" " * 5000).status == 413
    reply = tap.submit("application/json", _line(prompt="x" * 1500))
    assert reply.status == 413 and reply.body["problems"][0]["reason"] == "too_large"


def test_stopping_tap_answers_503_with_retry_after(tap: Tap) -> None:
    tap.stopping = True
    reply = tap.submit("application/json", _line())
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"


class StubProducer:
    """Stands in for the KafkaProducer in these unit tests of the request path: ``send``
    returns a future the test resolves by hand. The real producer and broker are in
    tests/integration/test_tap.py and test_tap_outage.py."""

    def __init__(self) -> None:
        self.futures: list[Future] = []
        self._closed = False
        self.lock = threading.Lock()

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        future = Future()
        with self.lock:
            self.futures.append(future)
        return future

    def close(self, timeout: float | None = None) -> None:
        self._closed = True


def _tap(registry: CollectorRegistry, producer: object, **tap: object) -> Tap:
    s = Settings().with_overrides(tap={"retry_after_s": 3, **tap})
    return Tap(s.kafka, s.tap, s.features.max_future_s, producer, registry)  # type: ignore[arg-type]


class Request:
    """One ``submit`` on a thread of its own, as the HTTP server runs it."""

    def __init__(self, tap: Tap, body: bytes, ctype: str = "application/x-ndjson") -> None:
        self.reply: Reply | None = None
        self.thread = threading.Thread(target=self._run, args=(tap, body, ctype), daemon=True)
        self.thread.start()

    def _run(self, tap: Tap, body: bytes, ctype: str) -> None:
        self.reply = tap.submit(ctype, body)

    def answer(self) -> Reply:
        self.thread.join(timeout=30)
        assert self.reply is not None, "no answer"
        return self.reply


def _sent(producer: StubProducer, n: int) -> list[Future]:
    deadline = time.monotonic() + 30
    while len(producer.futures) < n:
        assert time.monotonic() < deadline, f"{n} events never reached the producer"
        time.sleep(0.005)
    return producer.futures[:n]


def _events(*ids: str) -> bytes:
    return b"".join(_line(event_id=i) + b"\n" for i in ids)


def test_202_only_once_the_broker_acknowledged_every_event(registry: CollectorRegistry) -> None:
    producer = StubProducer()
    tap = _tap(registry, producer, ack_timeout_ms=60_000)
    request = Request(tap, _events("a", "b", "c"))
    first, second, third = _sent(producer, 3)
    first.success("metadata")
    second.success("metadata")
    assert request.thread.is_alive()  # two of three: no answer yet
    third.success("metadata")
    assert request.answer() == Reply(202, {"accepted": 3})
    sample = registry.get_sample_value
    assert sample("detector_tap_events_accepted_total") == 3
    assert sample("detector_tap_events_delivered_total") == 3
    assert tap.buffer.events == 0  # released before the answer


def test_one_failed_event_refuses_the_request_at_once(registry: CollectorRegistry) -> None:
    producer = StubProducer()
    tap = _tap(registry, producer, ack_timeout_ms=60_000)
    request = Request(tap, _events("a", "b"))
    first, _ = _sent(producer, 2)
    first.success("metadata")
    producer.futures[1].failure(KafkaTimeoutError("expired"))
    reply = request.answer()  # without waiting for tap.ack_timeout_ms
    assert reply.status == 503 and reply.headers == {"Retry-After": "3"}
    assert "KafkaTimeoutError" in reply.body["error"] and "1 of 2" in reply.body["error"]
    assert "retry the whole request" in reply.body["error"]
    assert registry.get_sample_value("detector_tap_events_accepted_total") == 0
    assert registry.get_sample_value("detector_tap_events_failed_total") == 1
    assert tap.readiness() == (False, "kafka deliveries failing (KafkaTimeoutError)")


def test_no_acknowledgement_in_time_is_503_and_the_events_keep_their_buffer_room(
    registry: CollectorRegistry,
) -> None:
    producer = StubProducer()
    tap = _tap(registry, producer, ack_timeout_ms=100)
    reply = tap.submit("application/x-ndjson", _events("a", "b"))
    assert reply.status == 503 and "tap.ack_timeout_ms (100 ms)" in reply.body["error"]
    assert tap.buffer.events == 2  # still in the producer: bounded by the buffer
    for future in producer.futures:
        future.success("metadata")  # delivered after all: the retry is dropped as duplicate
    assert tap.buffer.events == 0
    assert tap.gate.delivering


def test_while_not_delivering_one_request_probes_and_the_others_are_refused_at_once(
    registry: CollectorRegistry,
) -> None:
    producer = StubProducer()
    tap = _tap(registry, producer, ack_timeout_ms=60_000)
    failing = Request(tap, _events("a"))
    _sent(producer, 1)[0].failure(KafkaTimeoutError())
    assert failing.answer().status == 503
    probe = Request(tap, _events("b"))
    _sent(producer, 2)
    for i in range(5):  # refused without reaching the producer, while the probe waits
        reply = tap.submit("application/x-ndjson", _events(f"c{i}"))
        assert reply.status == 503 and "not delivering" in reply.body["error"]
        assert reply.headers["Retry-After"] == "3"
    assert len(producer.futures) == 2
    producer.futures[1].success("metadata")
    assert probe.answer().status == 202
    after = Request(tap, _events("d"))  # delivering again: every request goes through
    _sent(producer, 3)[2].success("metadata")
    assert after.answer().status == 202
    assert registry.get_sample_value("detector_tap_events_refused_total", {"reason": "kafka_unavailable"}) == 6  # fmt: skip


def test_only_one_probe_at_a_time_under_concurrent_requests() -> None:
    gate = Gate()
    gate.failed("KafkaTimeoutError")
    admitted: list[str] = []
    lock = threading.Lock()

    def request() -> None:
        admission = gate.admit()
        with lock:
            admitted.append(admission)

    threads = [threading.Thread(target=request) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(admitted) == ["probe"] + ["refuse"] * 15


def test_acks_count_every_event_and_settle_on_the_first_failure() -> None:
    acks = Acks(3)
    for _ in range(3):
        acks.delivered(None)
    assert acks.wait(0) and acks.acked == 3
    failed = Acks(3)
    failed.delivered(None)
    failed.failed(KafkaTimeoutError())
    failed.failed(ValueError())  # the first failure names the reason
    assert not failed.wait(60) and failed.error == "KafkaTimeoutError"


def test_a_failed_producer_is_refused_at_once_and_rebuilt(registry: CollectorRegistry) -> None:
    broken, fresh = StubProducer(), StubProducer()
    broken._closed = True  # what producer_failure reads; the fatal state is in the integration test
    tap = _tap(registry, broken)
    tap.rebuild = lambda: fresh  # type: ignore[assignment,return-value]
    reply = tap.submit("application/x-ndjson", _events("a"))
    assert reply.status == 503 and "rebuilding" in reply.body["error"]
    assert broken.futures == []
    tap.maintain()
    assert tap.producer is fresh and tap.healthy
    assert registry.get_sample_value("detector_tap_producer_rebuilds_total") == 1


def test_a_producer_that_cannot_be_rebuilt_makes_the_tap_unhealthy(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = StubProducer()
    broken._closed = True
    tap = _tap(registry, broken)
    attempts: list[int] = []

    def unreachable() -> StubProducer:
        attempts.append(1)
        raise KafkaTimeoutError("Unable to bootstrap")

    tap.rebuild = unreachable  # type: ignore[assignment]
    tap.maintain()
    assert tap.producer is None and not tap.healthy
    assert tap.readiness() == (False, "no kafka producer (being rebuilt)")
    tap.maintain()
    assert len(attempts) == 1  # backing off
    reply = tap.submit("application/x-ndjson", _events("a"))
    assert reply.status == 503 and reply.headers["Retry-After"] == "3"
    monkeypatch.setattr(tap_module, "REBUILD_BACKOFF_MAX_S", 0.0)
    tap.maintain()
    assert len(attempts) == 2
    fresh = StubProducer()
    tap.rebuild = lambda: fresh  # type: ignore[assignment,return-value]
    tap.maintain()
    assert tap.producer is fresh and tap.healthy


def test_replacements_that_keep_failing_before_delivering_make_the_tap_unhealthy(
    registry: CollectorRegistry,
) -> None:
    tap = _tap(registry, None)
    built: list[StubProducer] = []

    def rebuild() -> StubProducer:
        built.append(StubProducer())
        built[-1]._closed = len(built) <= 4  # each one fails at once, as on an auth error
        return built[-1]

    tap.rebuild = rebuild  # type: ignore[assignment]
    for _ in range(4):
        tap.maintain()
        assert tap.healthy == (len(built) <= tap_module.REBUILDS_UNDELIVERED_MAX)
    assert not tap.healthy
    tap.maintain()  # the fifth works
    request = Request(tap, _events("a"))
    _sent(built[-1], 1)[0].success("metadata")
    assert request.answer().status == 202
    assert tap.healthy  # a delivery resets the count


def test_tap_health_is_dead_without_a_producer() -> None:
    health = TapHealth()
    assert health.alive
    health.producer_ok = False
    assert not health.alive


def test_an_unexpected_error_still_gets_an_answer(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = _tap(registry, StubProducer())

    def broken(*args: object) -> None:
        raise RecursionError("SECRET-PROMPT-TEXT")

    monkeypatch.setattr(tap_module, "check_events", broken)
    reply = tap.submit("application/json", _line())
    assert reply.status == 500 and reply.headers["Retry-After"] == "1"
    assert "RecursionError" in reply.body["error"] and "SECRET" not in reply.body["error"]
    assert registry.get_sample_value("detector_tap_requests_total", {"code": "500"}) == 1
