"""Small helpers for tests against the real broker and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis
import yaml
from kafka import KafkaConsumer

from detector.config import Settings
from detector.io.kafka import ensure_topics, make_producer
from detector.state.account import AccountState

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
    producer = make_producer(settings.kafka, max_request_size=16 * 1024 * 1024)  # multi-MB tests
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

    def read_to_end(self, timeout_s: float, what: str) -> list[Any]:
        """Everything the topic holds now, for reading after its producers stopped.

        One poll may return only part of the topic (one partition's fetch, say), so
        read until every partition's position reaches the end offset seen after it.
        """

        def caught_up() -> bool:
            self.read()
            assigned = self.consumer.assignment()
            if not assigned:
                return False
            ends = self.consumer.end_offsets(list(assigned))
            return all(self.consumer.position(tp) >= end for tp, end in ends.items())

        wait_until(caught_up, timeout_s, what, every_s=0)
        return self.messages

    def close(self) -> None:
        self.consumer.close()


def account_values(settings: Settings) -> dict[str, bytes]:
    """Every account's stored value, by account id."""
    client = redis.Redis.from_url(settings.redis.url)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}acct:*", count=1000))
        values = client.mget(keys) if keys else []
        return {
            k[k.index(b"{") + 1 : k.rindex(b"}")].decode(): v
            for k, v in zip(keys, values, strict=True)
        }
    finally:
        client.close()


def account_event_counts(settings: Settings) -> dict[str, int]:
    n = len(settings.state.windows_s)
    return {a: AccountState.from_bytes(v, n).events for a, v in account_values(settings).items()}


def child_environment(settings: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the settings it may carry, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR__")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    return {**env, **(settings or {})}


def run_detector(
    *args: str, env: dict[str, str], timeout_s: float = 30
) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process, with only the given settings in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args],
        env=child_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def start_worker(config: Path) -> subprocess.Popen[bytes]:
    """`detector run` in a child process (so a test can SIGKILL it); WORKER_LOG names a log file."""
    env = child_environment()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detector.cli",
            "--log-level",
            os.environ.get("WORKER_LOG_LEVEL", "warning"),
            "run",
            "--config",
            str(config),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("WORKER_LOG", os.devnull), "ab"),
    )


def write_config(settings: Settings, directory: Path) -> Path:
    """The settings as a YAML overlay a child worker can load with --config."""
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return config
