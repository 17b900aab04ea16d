"""Kafka adapters (kafka-python): the batched consumer, and producers for alerts and dead letters."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from detector.config import KafkaSettings, parse_bootstrap_servers
from detector.errors import ConfigError, KafkaUnavailable
from detector.events import Alert, DeadLetter, RawRecord
from detector.metrics import Metrics

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 30.0
# A commit that cannot finish (broker gone) gives up: later commits cover its offsets, and
# until one does, a restart only redelivers events that the watermarks then skip.
COMMIT_TIMEOUT_MS = 5000


# kafka-python logs whole record values at DEBUG; raw prompts must never reach a log line.
PAYLOAD_LOGGERS = ("kafka",)  # its producer, fetcher and connection debug lines all carry records


class _NotGilWaits(logging.Filter):
    """kafka-python's I/O thread warns when one of its steps took over 0.1 s. In a worker that
    keeps the interpreter busy with batches, that is the thread waiting for the GIL, not a
    fault: a warning every few seconds that on-call cannot act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "blocking the event loop" not in record.getMessage()


class _NotCloseRaces(logging.Filter):
    """kafka-python 3.0 (up to 3.0.12 at least) sometimes logs an ERROR with a traceback when a
    client closes: its I/O thread still reads from a transport whose socket and protocol
    ``close`` has just set to None (an ``AttributeError`` on ``None`` in the read path, logged
    by the transport or by the selector's task runner). Nothing is lost, and on-call would be
    paged for a stop. Any other error, a receive error on an open socket too, is still logged."""

    # Where the transport reads, and what it reads through: its socket and its protocol.
    READ_PATH = frozenset({"_read_from_sock", "_sock_recv"})
    EMPTIED = frozenset({"recv", "data_received"})

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (
            not isinstance(exc, AttributeError)
            or exc.obj is not None
            or exc.name not in self.EMPTIED
        ):
            return True
        tb = record.exc_info[2] if record.exc_info else None
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        return tb is None or tb.tb_frame.f_code.co_name not in self.READ_PATH


_FILTERS = {
    "kafka.net.selector": (_NotGilWaits, _NotCloseRaces),
    "kafka.net.transport": (_NotCloseRaces,),
}


def configure_kafka_logs() -> None:
    """No record values in kafka-python's logs, none of its GIL-wait warnings, and none of its
    errors from reading a socket it is closing."""
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    for name, kinds in _FILTERS.items():
        logger = logging.getLogger(name)
        for kind in kinds:
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())


def connection_options(
    settings: KafkaSettings, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Brokers, client id, TLS and SASL options for any kafka-python client.

    The SASL password is read here, from the environment variable or file the settings
    name, so it is never part of the settings (nor of anything that prints them).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, key):
                options[key] = getattr(settings, key)
    if settings.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=read_secret(
                settings.sasl_password_env, settings.sasl_password_file, environ
            ),
        )
    return options


def read_secret(env_name: str, file: str, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"kafka.sasl_password_file {file}: {exc.strerror}") from None
    if environ.get(env_name):
        return environ[env_name]
    raise ConfigError(
        f"SASL needs a password: set the environment variable {env_name} (kafka.sasl_password_env) "
        "or kafka.sasl_password_file"
    )


BROKER_PROBE_EVERY_S = 0.5  # between rounds of connection attempts while waiting at start-up
BROKER_CONNECT_TIMEOUT_S = 2.0  # one TCP connection attempt
_Client = TypeVar("_Client")


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer"
    return exc.strerror or str(exc)


def _wait_for_broker(settings: KafkaSettings) -> None:
    """Until one bootstrap server accepts a connection, for ``kafka.bootstrap_timeout_ms`` at
    most; then a KafkaUnavailable that names the setting.

    kafka-python's own bootstrap logs two error lines per attempt and ends in a 40-line
    KafkaTimeoutError traceback; a quiet TCP connect first turns the usual start-up mistakes
    (wrong host or port, broker not up) into one line. Only start-up waits here: once
    running, the clients reconnect by themselves and the worker retries with backoff.
    """
    wait_s = settings.bootstrap_timeout_ms / 1000
    deadline = time.monotonic() + wait_s
    servers = parse_bootstrap_servers(settings.bootstrap_servers)
    said = False
    while True:
        problems = []
        for host, port in servers:
            timeout_s = min(BROKER_CONNECT_TIMEOUT_S, max(0.1, deadline - time.monotonic()))
            try:
                with socket.create_connection((host, port), timeout=timeout_s):
                    return
            except OSError as exc:
                problems.append(f"{host}:{port} {_reason(exc)}")
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise KafkaUnavailable(
                f"no Kafka broker answers at kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS) "
                f"{settings.bootstrap_servers} after {wait_s:g} s ({'; '.join(problems)}): "
                "set it to the brokers' host:port, or start the broker "
                "(kafka.bootstrap_timeout_ms sets the wait)"
            )
        if not said:  # once: a user should know why nothing happens for a while
            log.info("waiting up to %g s for a Kafka broker (%s)", wait_s, "; ".join(problems))
            said = True
        time.sleep(min(BROKER_PROBE_EVERY_S, left_s))


def bootstrapped(settings: KafkaSettings, make: Callable[[], _Client]) -> _Client:
    """A kafka-python client made once a broker answers; its eager bootstrap failing (a port
    that accepts connections but does not speak Kafka as configured) in one line too."""
    _wait_for_broker(settings)
    try:
        return make()
    except KafkaTimeoutError:
        raise KafkaUnavailable(
            f"kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS) {settings.bootstrap_servers} "
            f"accepts connections but gave no Kafka metadata within {settings.bootstrap_timeout_ms} "
            "ms: check that it is a Kafka listener and that kafka.security_protocol and its "
            "TLS/SASL settings match it"
        ) from None


def ensure_topics(settings: KafkaSettings, partitions: int | None = None) -> None:
    """Create the input, alerts and dead-letter topics if they do not exist.

    Like every client made here, waits at most ``kafka.bootstrap_timeout_ms`` for a broker.
    """
    admin = bootstrapped(
        settings,
        lambda: KafkaAdminClient(
            **connection_options(settings), bootstrap_timeout_ms=settings.bootstrap_timeout_ms
        ),
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, partitions or settings.topic_partitions, 1)
            for name in (settings.input_topic, settings.alerts_topic, settings.dlq_topic)
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                admin.create_topics(wanted)
    finally:
        admin.close()


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    options: dict[str, Any] = {
        **connection_options(settings),
        "bootstrap_timeout_ms": settings.bootstrap_timeout_ms,
        "acks": "all",
        "linger_ms": 5,
        "retries": 5,
    }
    options.update(overrides)
    return bootstrapped(settings, lambda: KafkaProducer(**options))


def make_group_consumer(
    settings: KafkaSettings, topic: str, group_id: str, **overrides: Any
) -> KafkaConsumer:
    """A member of ``group_id`` reading ``topic`` that commits only when told to, made once a
    broker answers (see ``bootstrapped``)."""
    return bootstrapped(
        settings,
        lambda: KafkaConsumer(
            topic,
            **connection_options(settings),
            bootstrap_timeout_ms=settings.bootstrap_timeout_ms,
            group_id=group_id,
            enable_auto_commit=False,  # commit after effect, never before
            auto_offset_reset=settings.auto_offset_reset,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            **overrides,
        ),
    )


class KafkaSource:
    """A consumer-group member that hands out batches and commits them after their effect."""

    def __init__(self, settings: KafkaSettings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._consumer = make_group_consumer(
            settings,
            settings.input_topic,
            settings.group_id,
            max_poll_records=settings.poll_max_records,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            receive_message_max_bytes=settings.receive_max_bytes,
        )
        self._paused = False
        self._lagged: set[tuple[str, int]] = set()  # partitions the lag gauge has a value for

    def poll(self, wait: bool = True) -> list[RawRecord]:
        """The next batch; without ``wait``, only what was already fetched."""
        try:
            polled = self._consumer.poll(
                timeout_ms=self._settings.poll_timeout_ms if wait else 0,
                max_records=self._settings.poll_max_records,
            )
        except KafkaError as exc:
            raise KafkaUnavailable(f"kafka poll: {exc}") from exc
        records = [
            RawRecord(m.topic, m.partition, m.offset, m.key, m.value or b"")
            for messages in polled.values()
            for m in messages
        ]
        assigned = self._consumer.assignment()
        self._update_lag(records, {(tp.topic, tp.partition) for tp in assigned})
        self._metrics.assigned_partitions.set(len(assigned))
        return records

    def connected(self) -> bool:
        """Whether the consumer holds any broker connection (kafka-python reconnects by itself)."""
        stats = self._consumer.metrics().get("consumer-metrics", {})
        return stats.get("connection-count", 0.0) > 0

    def hold(self) -> None:
        """Stop fetching (while a batch is retried) but stay in the group."""
        if not self._paused:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True
        self.poll()  # keeps the member alive; paused partitions return nothing

    def release(self) -> None:
        if self._paused:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False

    def commit(self, records: list[RawRecord], wait: bool = True) -> bool:
        """Commit the offsets after ``records``; False if the group moved the partitions away.

        Without ``wait`` the commit is sent and not waited for: the effects are already
        written, and if it fails a later commit covers these offsets.
        """
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in offsets or offsets[tp].offset <= r.offset:
                offsets[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
        if not offsets:
            return True
        try:
            if wait:
                self._consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
            else:
                self._consumer.commit_async(offsets, callback=_refused)
        except KafkaError as exc:
            _refused(offsets, exc)
            return False
        return True

    def _update_lag(self, records: list[RawRecord], assigned: set[tuple[str, int]]) -> None:
        last: dict[tuple[str, int], int] = {}
        for r in records:
            last[(r.topic, r.partition)] = r.offset
        for (topic, partition), offset in last.items():
            highwater = self._consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                self._metrics.consumer_lag.labels(topic, str(partition)).set(
                    max(0, highwater - offset - 1)
                )
                self._lagged.add((topic, partition))
        # A partition the group gave to another worker is that worker's to report: a value
        # left here would be summed with the new owner's and never go down.
        for topic, partition in self._lagged - assigned:
            self._metrics.consumer_lag.remove(topic, str(partition))
        self._lagged &= assigned

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def _refused(offsets: Mapping[TopicPartition, OffsetAndMetadata], outcome: object) -> None:
    # A rebalance took the partitions: the new owner gets the records again and the
    # per-account watermarks in Redis make sure nothing is counted twice.
    if isinstance(outcome, Exception):
        log.warning("offset commit refused (%s): records will be redelivered", outcome)


class _ProducerSink:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: list[Any] = []

    def _send(
        self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        try:
            self._pending.append(
                self._producer.send(self._topic, key=key, value=value, headers=headers)
            )
        except KafkaError as exc:
            raise KafkaUnavailable(f"kafka produce to {self._topic}: {exc}") from exc

    def flush(self) -> None:
        if not self._pending:
            return
        try:
            self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            raise KafkaUnavailable(f"kafka flush to {self._topic}: {exc}") from exc
        failed = [f for f in self._pending if not f.is_done or f.failed()]
        self._pending = []
        if failed:
            first = failed[0].exception if failed[0].is_done else "timed out"
            raise KafkaUnavailable(
                f"kafka: {len(failed)} messages to {self._topic} not delivered: {first}"
            )


class KafkaAlertSink(_ProducerSink):
    """Alerts as JSON, keyed by subject id (contract ``alert.v1``)."""

    def send(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self._send(alert.subject_id.encode("utf-8"), alert.encode())


class KafkaDeadLetterSink(_ProducerSink):
    """The original bytes (unless redacted), with the reason and origin in headers."""

    def __init__(
        self, producer: KafkaProducer, topic: str, redact_payload: bool, payload_max_bytes: int
    ) -> None:
        super().__init__(producer, topic)
        self._redact = redact_payload
        self._max = payload_max_bytes

    def send(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            r = letter.record
            headers = [
                ("dlq.reason", letter.reason.encode()),
                ("dlq.detail", letter.detail.encode("utf-8", errors="replace")),
                ("dlq.topic", r.topic.encode()),
                ("dlq.partition", str(r.partition).encode()),
                ("dlq.offset", str(r.offset).encode()),
                ("dlq.redacted", b"true" if self._redact else b"false"),
                ("dlq.original_bytes", str(len(r.value)).encode()),
            ]
            if letter.error is not None:
                headers.append(("dlq.error", letter.error.encode()))
            # Cut what would exceed the broker's message size: a dead letter must never block.
            payload = b"" if self._redact else r.value[: self._max]
            self._send(r.key, payload, headers)
