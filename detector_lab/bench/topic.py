"""The bench's own Kafka plumbing: its topics, bulk and paced producing, committed offsets,
and the ceiling (kafka-python consuming and decoding, nothing else)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from detector.config import KafkaSettings
from detector.errors import BenchError
from detector.io.kafka import connection_options, make_producer

Progress = Callable[[int, int], None]  # (done, total)
PROGRESS_EVERY = 2000  # events between progress callbacks
BULK_LINGER_MS = 20
BULK_BATCH_BYTES = 512 * 1024  # ~600 realistic events per produce batch: setup, not measured
# The paced (latency) producer batches like a gateway: it wakes every ``PACE_TICK_S`` and sends the events due by then at once. On two shared
# cores the load generator's CPU is taken from the detector it measures: a produce request
# and a sleep per event made it, not the detector, set the tail (p99 122 ms for a consumer
# doing nothing at 4,700 events/s); waking every 1 ms with a 5 ms linger cost 0.39 of a core
# at 3,000 events/s. Each wake costs ~3 ms of CPU in kafka-python (a produce request and its
# futures): at 2,000 events/s, every 10 ms took 0.41-0.43 of a core, every 20 ms 0.30-0.33.
PACED_LINGER_MS = 0
PACE_TICK_S = 0.020


def create_topic(settings: KafkaSettings, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(**connection_options(settings))
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def delete_topics(settings: KafkaSettings, topics: Iterable[str]) -> None:
    """Best effort: a broker that cannot delete topics keeps them (they are named per run)."""
    with contextlib.suppress(KafkaError, OSError):
        admin = KafkaAdminClient(**connection_options(settings))
        try:
            admin.delete_topics(list(topics), raise_errors=False)
        finally:
            admin.close()


def read_events(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) per line of a JSONL events file: the account id keys its partition."""
    with path.open("rb") as fh:
        for line in fh:
            value = line.rstrip(b"\n")
            if value:
                yield orjson.loads(value)["account_id"].encode("utf-8"), value


class _Offsets:
    """End offsets learned from the producer's acknowledgements, per partition."""

    def __init__(self) -> None:
        self.ends: dict[int, int] = {}
        self.failures: list[BaseException] = []

    def acked(self, metadata: object) -> None:  # runs on kafka-python's I/O thread
        partition, offset = metadata.partition, metadata.offset  # type: ignore[attr-defined]
        self.ends[partition] = max(self.ends.get(partition, 0), offset + 1)

    def failed(self, exc: BaseException) -> None:
        self.failures.append(exc)


def produce_all(
    settings: KafkaSettings,
    topic: str,
    events: Iterable[tuple[bytes, bytes]],
    total: int,
    progress: Progress | None = None,
) -> dict[int, int]:
    """Send every event and return each partition's end offset.

    Taken from the acknowledgements because some brokers (Tansu 0.6) answer ListOffsets
    with the base offset of the last record batch rather than the log end.
    """
    producer = make_producer(settings, linger_ms=BULK_LINGER_MS, batch_size=BULK_BATCH_BYTES)
    offsets = _Offsets()
    try:
        for n, (key, value) in enumerate(events, start=1):
            producer.send(topic, key=key, value=value).add_callback(offsets.acked).add_errback(
                offsets.failed
            )
            if progress and n % PROGRESS_EVERY == 0:
                progress(n, total)
        producer.flush()
    finally:
        producer.close()
    if offsets.failures:
        raise BenchError(
            f"{len(offsets.failures)} events not accepted by the broker "
            f"({settings.bootstrap_servers}): {offsets.failures[0]}"
        )
    if progress:
        progress(total, total)
    return dict(offsets.ends)


@dataclass(frozen=True)
class Sent:
    """One paced event: where it landed, when it was handed to the producer and when it was
    due (monotonic s). A generator that falls behind sends late: ``sent_s - due_s``."""

    partition: int
    offset: int
    sent_s: float
    due_s: float


def produce_paced(
    settings: KafkaSettings,
    topic: str,
    events: list[tuple[bytes, bytes]],
    rate_per_s: float,
    progress: Progress | None = None,
) -> list[Sent]:
    """Send ``events`` at a fixed rate: every ``PACE_TICK_S`` the events due by then, each
    stamped with the time it was handed to the producer (its production) and the time it
    was due."""
    producer = make_producer(settings, linger_ms=PACED_LINGER_MS)
    stamps: list[tuple[float, float]] = []
    futures = []
    try:
        started = time.monotonic()
        i = 0
        while i < len(events):
            due = min(len(events), int((time.monotonic() - started) * rate_per_s) + 1)
            for k in range(i, due):
                key, value = events[k]
                stamps.append((time.monotonic(), started + k / rate_per_s))
                futures.append(producer.send(topic, key=key, value=value))
            if progress and i // 200 != due // 200:
                progress(due, len(events))
            i = due
            time.sleep(PACE_TICK_S)
        producer.flush()
    finally:
        producer.close()
    sent = []
    for (sent_s, due_s), future in zip(stamps, futures, strict=True):
        if not future.succeeded():
            raise BenchError(f"a paced event was not accepted by the broker: {future.exception}")
        md = future.value
        sent.append(Sent(md.partition, md.offset, sent_s, due_s))
    return sent


class CommittedOffsets:
    """Reads a consumer group's committed offsets on one topic without joining the group."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._admin = KafkaAdminClient(**connection_options(settings))
        self._topic = topic

    def read(self, group: str) -> dict[int, int]:
        try:
            found = self._admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            return {}  # the group has not committed yet (or the coordinator is moving)
        return {
            tp.partition: max(0, om.offset)
            for tp, om in found.items()
            if tp.topic == self._topic and om is not None
        }

    def close(self) -> None:
        self._admin.close()


@dataclass(frozen=True)
class CeilingRun:
    events: int
    measured_events: int  # after the first batch, which carries the connection set-up
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.measured_events / self.seconds if self.seconds > 0 else 0.0


def consume_ceiling(
    settings: KafkaSettings,
    topic: str,
    ends: dict[int, int],
    timeout_s: float,
    progress: Progress | None = None,
) -> CeilingRun:
    """Read the whole topic as the worker's consumer would (same batch size), decoding each
    value with orjson and doing nothing else; no group, so no join to wait for."""
    total = sum(ends.values())
    consumer = KafkaConsumer(
        **connection_options(settings),
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=settings.poll_max_records,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(ends)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen = first_batch = 0
        first_s = last_s = 0.0
        deadline = time.monotonic() + timeout_s
        while seen < total:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"ceiling: read {seen} of {total} events in {timeout_s:.0f} s "
                    f"from {settings.bootstrap_servers}"
                )
            polled = consumer.poll(timeout_ms=settings.poll_timeout_ms)
            n = 0
            for records in polled.values():
                for record in records:
                    orjson.loads(record.value)
                n += len(records)
            if not n:
                continue
            last_s = time.monotonic()
            if not seen:
                first_s, first_batch = last_s, n
            seen += n
            if progress:
                progress(seen, total)
        return CeilingRun(seen, seen - first_batch, last_s - first_s)
    finally:
        consumer.close()
