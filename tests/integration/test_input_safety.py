"""Bad input and privacy through the whole streaming path, on the real broker and Redis."""

from __future__ import annotations

import collections
import logging

import orjson
import pytest
import redis

from detector.config import Settings
from tests.integration.helpers import TopicReader, account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = pytest.mark.integration

MARKER = "ZQXMARKER"  # stands for prompt text: it must not leave the process
GOOD = {"event_id": "ok-1", "ts": 1_767_225_600.0, "account_id": "acct-ok", "model": "m"}
NASTY = {
    b"": "invalid_json",
    b"\xff\xfe not utf-8": "invalid_utf8",
    b"[1, 2]": "not_object",
    b"null": "not_object",
    b'{"a": NaN}': "invalid_json",
    b'{"ts": Infinity}': "invalid_json",
    b"[" * 5000: "invalid_json",  # deep nesting
    orjson.dumps({**GOOD, "event_id": ""}): "too_short",
    orjson.dumps({**GOOD, "account_id": "x" * 500}): "too_long",
    orjson.dumps({**GOOD, "ts": -1}): "out_of_range",
    orjson.dumps({**GOOD, "ts": "yesterday"}): "wrong_type",
    orjson.dumps({**GOOD, "input_tokens": 1.5}): "wrong_type",
    orjson.dumps({**GOOD, "status": "weird"}): "invalid_value",
    orjson.dumps({"event_id": "x", "ts": 1.0, "model": "m", "prompt": MARKER}): "missing_field",
    orjson.dumps({**GOOD, "prompt": 5, "system_prompt": MARKER}): "wrong_type",
    # In the year 2100: one such event would blind its account's windows.
    orjson.dumps({**GOOD, "ts": 4_102_444_800}): "ts_in_future",
    orjson.dumps(GOOD)[:-1]
    + b',"input_tokens":'
    + b"7" * 40
    + b"}": "out_of_range",  # huge integer
    b'{"event_id":"e\x07","ts":1,"account_id":"a","model":"m"}': "invalid_json",  # raw control char
    b"\xef\xbb\xbf\xef\xbb\xbf{}": "invalid_json",
}


def test_nasty_messages_go_to_dead_letters_and_the_stream_goes_on(
    service_settings: Settings,
) -> None:
    settings = service_settings.with_overrides(service={"redact_dlq_payload": True})
    with RunningService(settings) as service:
        produce(settings, [], list(NASTY))
        good = [
            {
                **GOOD,
                "event_id": f"ok-{i}",
                "ts": GOOD["ts"] + i,
                "prompt": f"{MARKER} " * 20_000,
                "a_field_from_the_future": {"nested": [1, 2]},  # ignored, as the contract says
            }  # ~200 KB each
            for i in range(2)
        ]
        big = {**GOOD, "event_id": "ok-big", "ts": GOOD["ts"] + 2, "prompt": f"{MARKER} " * 300_000}
        produce(settings, good, [b"\xef\xbb\xbf" + orjson.dumps(big)])  # 3 MB, with a BOM
        reasons = collections.Counter(NASTY.values())

        def counted() -> dict[str, float]:
            by_reason = {
                r: service.metric("detector_events_invalid_total", {"reason": r}) for r in reasons
            }
            return {**by_reason, "applied": service.metric("detector_events_applied_total")}

        wait_until(lambda: sum(counted().values()) >= len(NASTY) + 3, 60, "every message counted")
        assert counted() == {**reasons, "applied": 3}
    dlq = TopicReader(settings, settings.kafka.dlq_topic)
    letters = wait_until(lambda: len(dlq.read()) >= len(NASTY) and dlq.messages, 20, "dead letters")
    dlq.close()
    assert sorted(dict(m.headers)["dlq.reason"].decode() for m in letters) == sorted(NASTY.values())
    assert all(m.value == b"" for m in letters)  # redaction on: reasons and origins only
    assert account_event_counts(settings) == {"acct-ok": 3}


def test_producer_duplicate_at_another_offset_is_counted_once(service_settings: Settings) -> None:
    events = [{**GOOD, "event_id": f"e{i}", "ts": GOOD["ts"] + i} for i in range(5)]
    with RunningService(service_settings) as service:
        produce(service_settings, [*events, events[2], events[4]])  # retried sends, new offsets
        wait_until(
            lambda: (
                service.metric("detector_events_applied_total")
                + service.metric("detector_events_duplicate_total")
                >= 7
            ),
            60,
            "every message applied or found a duplicate",
        )
        assert service.metric("detector_events_duplicate_total") == 2
    assert account_event_counts(service_settings) == {"acct-ok": 5}


def test_prompt_text_reaches_no_redis_key_alert_metric_log_or_dead_letter(
    service_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = service_settings.with_overrides(
        service={"redact_dlq_payload": True}, campaigns={"groups": {"background_min": 0}}
    )
    prompt = (f"{MARKER} Before answering, articulate the complete internal reasoning step by step. Problem "
              "{n}: how many primes are below {n}?")  # fmt: skip
    events = [
        {"event_id": f"p{a}-{i}", "ts": GOOD["ts"] + 30 * i + a, "account_id": f"acct-{a}", "model": "m",
         "billing_fingerprint": "card-1", "client_fingerprint": "cfp-1", "prompt": prompt.format(n=i),
         "system_prompt": MARKER,
         "output_tokens": 4096, "max_tokens": 4096, "temperature": 0.0, "stream": False}
        for i in range(30) for a in range(4)
    ]  # fmt: skip
    caplog.set_level(logging.DEBUG)
    with RunningService(settings) as service:
        produce(settings, events, [orjson.dumps({"event_id": "bad", "prompt": MARKER})])
        wait_until(
            lambda: service.metric("detector_events_consumed_total") >= len(events) + 1, 60, "all"
        )
        metrics_text = service.get("/metrics")[1]
    alerts = TopicReader(settings, settings.kafka.alerts_topic)
    published = alerts.read_to_end(20, "alerts")
    alerts.close()
    assert any(orjson.loads(m.value)["type"] == "coordinated_cluster" for m in published)
    dlq = TopicReader(settings, settings.kafka.dlq_topic)
    letters = dlq.read_to_end(20, "dead letter")
    dlq.close()

    client = redis.Redis.from_url(settings.redis.url)
    stored = []
    for key in client.scan_iter(match=f"{settings.redis.key_prefix}*", count=1000):
        stored.append(key)
        stored.append(client.dump(key) or b"")
    client.close()
    places = {
        "redis": b"".join(stored),
        "alerts": b"".join(m.value for m in published),
        "dead letters": b"".join(m.value + b"".join(v for _, v in m.headers) for m in letters),
        "metrics": metrics_text.encode(),
        "logs": caplog.text.encode(),
    }
    for place, data in places.items():
        assert MARKER.encode() not in data, f"prompt text found in {place}"
    assert stored, "the scan must have seen the state"
