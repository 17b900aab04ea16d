"""The tap's request checks and its bounded buffer (no services: nothing here reaches Kafka)."""

from __future__ import annotations

import threading

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.tap import Buffer, Tap, check_events, split_body

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
