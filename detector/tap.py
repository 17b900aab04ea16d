"""``detector tap``: query events over local HTTP into the query topic, for inference servers
that do not publish to Kafka themselves (the sidecar form).

``POST /v1/events`` takes one event (``Content-Type: application/json``) or JSON lines
(``application/x-ndjson``). Each event is checked by the pipeline's own decoder
(:func:`detector.decode.decode_record`), so the tap refuses exactly what the worker would
send to the dead-letter topic. A request is taken whole or refused whole:

- 202: every event was handed to the producer, keyed by ``account_id``;
- 400 (with each bad line's reason), 411, 413, 415: fix the request, do not retry it as is;
- 429 with ``Retry-After``: the buffer of events not yet acknowledged by the broker is full;
- 503 with ``Retry-After``: the broker does not answer, or the tap is shutting down.

Retrying a request after 429 or 503 is safe: the detector drops events whose ``event_id``
it has already counted. Accepted events wait in memory until the broker acknowledges them
(bounded by ``tap.buffer_max_events`` and ``tap.buffer_max_bytes``; kafka-python's own buffer
has no bound), so a crash loses at most that buffer. Prompt text is never logged, and
refusals name the field and rule, never the value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CollectorRegistry, Counter, Gauge

from detector.config import KafkaSettings, Settings, TapSettings
from detector.decode import REASONS, decode_record
from detector.events import QueryEvent, RawRecord
from detector.health import Health, HealthServer

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
SINGLE_TYPES = frozenset({"application/json"})
LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines"})
PROBLEMS_LISTED = 100  # a reply lists at most this many bad lines (the count says how many in all)
REFUSAL_REASONS = (*REASONS, "too_large", "buffer_full", "kafka_unavailable")
STATUS_CODES = (202, 400, 404, 405, 411, 413, 415, 429, 503)
HEALTH_TICK_S = 1.0
_PRODUCER_HEADROOM_BYTES = 16 * 1024  # record and batch overhead above the largest event


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one line of a request was refused (line numbers start at 1)."""

    line: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def split_body(body: bytes, content_type: str) -> list[bytes] | None:
    """The request's events as byte strings, or None for a content type the tap does not take.

    >>> split_body(b'{"a": 1}\\n\\n{"a": 2}\\n', "application/x-ndjson; charset=utf-8")
    [b'{"a": 1}', b'', b'{"a": 2}']
    >>> split_body(b'{\\n "a": 1\\n}', "application/json")
    [b'{\\n "a": 1\\n}']
    >>> split_body(b"a=1", "application/x-www-form-urlencoded") is None
    True
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media in SINGLE_TYPES:
        return [body]
    if media in LINES_TYPES:
        lines = body.split(b"\n")
        if lines and not lines[-1].strip():
            lines.pop()  # the newline that ends the last line
        return [line.strip() for line in lines]
    return None


def check_events(
    lines: list[bytes], not_after: float, max_event_bytes: int
) -> tuple[list[tuple[bytes, bytes]], list[Problem]]:
    """(account key, event bytes) for each valid line, and a problem for each invalid one.

    Blank lines inside JSON lines are refused too: a request is taken whole or not at all,
    and a silently skipped line would hide a bug in the sender.
    """
    accepted: list[tuple[bytes, bytes]] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines, start=1):
        if len(line) > max_event_bytes:
            problems.append(
                Problem(
                    number,
                    "too_large",
                    f"event of {len(line)} bytes is over tap.max_event_bytes ({max_event_bytes})",
                )
            )
            continue
        result = decode_record(RawRecord("http", 0, number, None, line, line=number), not_after)
        if isinstance(result, QueryEvent):
            accepted.append((result.account_id.encode("utf-8"), line))
        else:
            problems.append(Problem(number, result.reason, result.detail))
    return accepted, problems


class Buffer:
    """Events handed to the producer and not yet acknowledged, bounded in count and bytes.

    >>> b = Buffer(max_events=3, max_bytes=100)
    >>> b.reserve(2, 60), b.reserve(2, 10), b.reserve(1, 50), b.reserve(1, 40)
    (True, False, False, True)
    >>> b.release(1, 60); (b.events, b.bytes)
    (2, 40)
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.events = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def reserve(self, events: int, nbytes: int) -> bool:
        """Room for the whole request, or none of it."""
        with self._lock:
            if self.events + events > self.max_events or self.bytes + nbytes > self.max_bytes:
                return False
            self.events += events
            self.bytes += nbytes
            return True

    def release(self, events: int, nbytes: int) -> None:
        with self._lock:
            self.events -= events
            self.bytes -= nbytes


class TapMetrics:
    def __init__(self, registry: CollectorRegistry, buffer: Buffer) -> None:
        self.requests = Counter(
            "detector_tap_requests",
            "HTTP requests to the events endpoint, by status code.",
            ["code"],
            registry=registry,
        )
        for code in STATUS_CODES:
            self.requests.labels(str(code))
        self.accepted = Counter(
            "detector_tap_events_accepted",
            "Events checked and handed to the producer.",
            registry=registry,
        )
        self.refused = Counter(
            "detector_tap_events_refused",
            "Events refused, by reason (the decoder's reasons, too_large, buffer_full, kafka_unavailable).",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason)
        self.delivered = Counter(
            "detector_tap_events_delivered",
            "Events acknowledged by the broker.",
            registry=registry,
        )
        self.failed = Counter(
            "detector_tap_events_failed",
            "Accepted events the broker never acknowledged (dropped after tap.delivery_timeout_ms).",
            registry=registry,
        )
        buffered = Gauge(
            "detector_tap_buffer_events",
            "Events accepted and not yet acknowledged by the broker.",
            registry=registry,
        )
        buffered.set_function(lambda: buffer.events)
        buffered_bytes = Gauge(
            "detector_tap_buffer_bytes",
            "Bytes of events accepted and not yet acknowledged by the broker.",
            registry=registry,
        )
        buffered_bytes.set_function(lambda: buffer.bytes)


def _refusal(status: int, message: str, retry_after_s: int | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
    return Reply(status, {"error": message}, headers)


class Tap:
    """The events endpoint's logic: check the request, reserve buffer room, hand it to the producer."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: TapSettings,
        max_future_s: float,
        producer: KafkaProducer,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topic = kafka.input_topic
        self.max_future_s = max_future_s
        self.producer = producer
        self.clock = clock
        self.buffer = Buffer(settings.buffer_max_events, settings.buffer_max_bytes)
        self.metrics = TapMetrics(registry, self.buffer)
        self.stopping = False
        self.failing = False  # the last delivery failed and none succeeded since

    def submit(self, content_type: str, body: bytes) -> Reply:
        reply = self._submit(content_type, body)
        self.metrics.requests.labels(str(reply.status)).inc()
        return reply

    def _submit(self, content_type: str, body: bytes) -> Reply:
        if self.stopping:
            return _refusal(503, "shutting down: send to another instance or retry", 1)
        if len(body) > self.settings.max_body_bytes:
            return _refusal(
                413, f"body of {len(body)} bytes is over tap.max_body_bytes ({self.settings.max_body_bytes})"
            )  # fmt: skip
        lines = split_body(body, content_type)
        if lines is None:
            return _refusal(
                415,
                f"Content-Type {content_type or '(none)'} is not taken: send application/json "
                "(one event) or application/x-ndjson (JSON lines)",
            )
        accepted, problems = check_events(
            lines, self.clock() + self.max_future_s, self.settings.max_event_bytes
        )
        if problems:
            for p in problems:
                self.metrics.refused.labels(p.reason).inc()
            status = 413 if all(p.reason == "too_large" for p in problems) else 400
            return Reply(
                status,
                {
                    "error": f"{len(problems)} of {len(lines)} events refused; none was accepted",
                    "problems": [
                        {"line": p.line, "reason": p.reason, "detail": p.detail}
                        for p in problems[:PROBLEMS_LISTED]
                    ],
                },
            )
        return self._produce(accepted)

    def _produce(self, accepted: list[tuple[bytes, bytes]]) -> Reply:
        nbytes = sum(len(value) for _, value in accepted)
        if not self.buffer.reserve(len(accepted), nbytes):
            self.metrics.refused.labels("buffer_full").inc(len(accepted))
            return _refusal(
                429,
                f"buffer full ({self.buffer.events} events, {self.buffer.bytes} bytes waiting for the "
                "broker): slow down and retry after the given seconds",
                self.settings.retry_after_s,
            )
        sent = 0
        try:
            for key, value in accepted:
                future = self.producer.send(self.topic, key=key, value=value)
                future.add_callback(self._delivered, len(value))
                future.add_errback(self._failed, len(value))
                sent += 1
        except KafkaError as exc:
            # Typically no topic metadata within tap.send_timeout_ms: the broker is away.
            unsent = accepted[sent:]
            self.buffer.release(len(unsent), sum(len(v) for _, v in unsent))
            self.metrics.refused.labels("kafka_unavailable").inc(len(unsent))
            self.metrics.accepted.inc(sent)
            reason = "no answer" if isinstance(exc, KafkaTimeoutError) else type(exc).__name__
            log.warning("cannot hand events to the producer for %s: %s", self.topic, reason)
            return _refusal(
                503,
                f"kafka unavailable ({reason}); {sent} of {len(accepted)} events were accepted, "
                "retry the request (duplicates are dropped by event_id)",
                self.settings.retry_after_s,
            )
        self.metrics.accepted.inc(sent)
        return Reply(202, {"accepted": sent})

    # Producer callbacks run on kafka-python's I/O thread: keep them short.
    def _delivered(self, nbytes: int, _metadata: object) -> None:
        self.buffer.release(1, nbytes)
        self.metrics.delivered.inc()
        self.failing = False

    def _failed(self, nbytes: int, exc: BaseException) -> None:
        self.buffer.release(1, nbytes)
        self.metrics.failed.inc()
        if not self.failing:
            log.warning("events to %s not delivered: %s", self.topic, type(exc).__name__)
        self.failing = True


def _handler(tap: Tap) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a sidecar posts many small requests

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != EVENTS_PATH:
                self._send(_counted(tap, _refusal(404, f"not found: POST events to {EVENTS_PATH}")))
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._send(_counted(tap, _refusal(411, "send a Content-Length header (chunked bodies are not taken)")))  # fmt: skip
                self.close_connection = True
                return
            if int(length) > tap.settings.max_body_bytes:
                self._send(_too_large(tap, int(length)))
                self.close_connection = True  # the unread body would be taken for the next request
                return
            body = self.rfile.read(int(length))
            self._send(tap.submit(self.headers.get("Content-Type", ""), body))

        def do_GET(self) -> None:
            self._send(_counted(tap, _refusal(405, f"use POST {EVENTS_PATH}")), {"Allow": "POST"})

        do_PUT = do_DELETE = do_PATCH = do_GET

        def _send(self, reply: Reply, extra: dict[str, str] | None = None) -> None:
            payload = orjson.dumps(reply.body) + b"\n"
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in {**reply.headers, **(extra or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # one line per request is noise
            pass

    return Handler


def _counted(tap: Tap, reply: Reply) -> Reply:
    """A refusal made before ``Tap.submit`` (which counts its own), counted by status."""
    tap.metrics.requests.labels(str(reply.status)).inc()
    return reply


def _too_large(tap: Tap, length: int) -> Reply:
    return _counted(
        tap,
        _refusal(
            413,
            f"body of {length} bytes is over tap.max_body_bytes ({tap.settings.max_body_bytes})",
        ),
    )


class TapServer:
    def __init__(self, host: str, port: int, tap: Tap) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(tap))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tap", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> TapServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def make_tap_producer(kafka: KafkaSettings, tap: TapSettings) -> KafkaProducer:
    from detector.io.kafka import make_producer

    return make_producer(
        kafka,
        linger_ms=tap.linger_ms,
        batch_size=tap.batch_bytes,
        max_block_ms=tap.send_timeout_ms,
        delivery_timeout_ms=tap.delivery_timeout_ms,
        # kafka-python wants delivery > linger + request timeout; 30 s is its default request timeout.
        request_timeout_ms=min(30_000, (tap.delivery_timeout_ms - tap.linger_ms) // 2),
        max_request_size=tap.max_event_bytes + _PRODUCER_HEADROOM_BYTES,
    )


def run_tap(
    settings: Settings,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[int, int], None] | None = None,
) -> None:
    """``detector tap``: serve until ``stop`` is set, then drain the buffer.

    ``on_started`` gets the events port and the metrics port (useful when both are 0).
    """
    from detector.io.kafka import configure_kafka_logs, ensure_topics

    configure_kafka_logs()
    registry = registry if registry is not None else CollectorRegistry()
    health = Health()
    health_server = HealthServer(
        settings.metrics.host, settings.metrics.port, registry, health
    ).start()
    producer = None
    server = None
    try:
        if settings.kafka.create_topics:
            ensure_topics(settings.kafka)
        producer = make_tap_producer(settings.kafka, settings.tap)
        tap = Tap(settings.kafka, settings.tap, settings.features.max_future_s, producer, registry)
        server = TapServer(settings.tap.host, settings.tap.port, tap).start()
        log.info(
            "tap on http://%s:%d%s -> %s; metrics on http://%s:%d/metrics",
            settings.tap.host,
            server.port,
            EVENTS_PATH,
            settings.kafka.input_topic,
            settings.metrics.host,
            health_server.port,
        )
        health.set_ready(True)
        if on_started:
            on_started(server.port, health_server.port)
        while not stop.wait(HEALTH_TICK_S):
            health.beat()
            health.set_ready(not tap.failing, "kafka deliveries failing" if tap.failing else "")
        tap.stopping = True
        health.set_ready(False, "shutting down")
        log.info("draining %d buffered events", tap.buffer.events)
        try:
            producer.flush(timeout=settings.tap.drain_timeout_s)
        except KafkaError as exc:
            log.warning("%d buffered events not delivered at shutdown: %s", tap.buffer.events, exc)
    finally:
        if server is not None:
            server.stop()
        if producer is not None:
            producer.close(timeout=settings.tap.drain_timeout_s)
        health_server.stop()
