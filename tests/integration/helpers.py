"""Small helpers for tests against the real broker and Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson
import redis
from kafka import KafkaConsumer

from detector.config import Settings
from detector.io.kafka import ensure_topics, make_producer

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def produce(settings: Settings, events: Iterable[dict[str, Any]], raw: Iterable[bytes] = ()) -> int:
    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    n = 0
    for value in raw:
        producer.send(settings.kafka.input_topic, key=b"raw", value=value)
        n += 1
    for event in events:
        producer.send(
            settings.kafka.input_topic, key=event["account_id"].encode(), value=orjson.dumps(event)
        )
        n += 1
    producer.flush()
    producer.close()
    return n


class TopicReader:
    """Reads a topic from the start, accumulating what arrived so far."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.messages: list[Any] = []

    def read(self) -> list[Any]:
        for batch in self.consumer.poll(timeout_ms=300).values():
            self.messages.extend(batch)
        return self.messages

    def close(self) -> None:
        self.consumer.close()


def account_event_counts(settings: Settings) -> dict[str, int]:
    client = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    try:
        counts = {}
        for key in client.scan_iter(match=f"{settings.redis.key_prefix}acct:*:s", count=1000):
            account = key[key.index("{") + 1 : key.rindex("}")]
            counts[account] = int((client.hget(key, "v") or "0").split("|", 1)[0])
        return counts
    finally:
        client.close()
