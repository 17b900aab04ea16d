"""``detector tap``: query events over local HTTP into the query topic, for inference servers
that do not publish to Kafka themselves (the sidecar form).

``POST /v1/events`` takes one event (``Content-Type: application/json``) or JSON lines
(``application/x-ndjson``). Each event is checked by the pipeline's own decoder
(:func:`detector.decode.decode_record`), so the tap refuses exactly what the worker would
send to the dead-letter topic. A request is taken whole or refused whole:

- 202: the broker acknowledged every event of the request (``acks=all``), keyed by
  ``account_id``;
- 400 (with each bad line's reason), 411, 413, 415: fix the request, do not retry it as is;
- 429 with ``Retry-After``: the buffer of events not yet acknowledged by the broker is full;
- 503 with ``Retry-After``: the broker did not acknowledge every event within
  ``tap.ack_timeout_ms``, the producer is known not to be delivering, or the tap is shutting
  down.

A request waits for the broker before it is answered, so a 202 is never taken back: what the
tap acknowledged is on the broker, whatever happens to the tap or its producer afterwards.
Retrying after 429 or 503 is safe: some of the events may reach the topic all the same, and
the detector drops events whose ``event_id`` it has already counted. While deliveries fail,
requests are refused at once (:class:`Gate`), all but one at a time that finds out whether
the broker is back. A producer that kafka-python holds in a fatal state (an idempotent
producer whose id a restarted broker no longer knows, say) is replaced; while it cannot be,
``/healthz`` reports unhealthy so that the orchestrator restarts the tap. A broker that lost
its state lost its topics too: with ``kafka.create_topics``, the tap creates those missing
again as at start-up (:meth:`Tap.maintain`). Prompt text is never logged, and refusals name
the field and rule, never the value.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CollectorRegistry, Counter, Gauge

from detector.config import KafkaSettings, Settings, TapSettings
from detector.decode import REASONS, decode_record
from detector.events import QueryEvent, RawRecord
from detector.health import Health, HealthServer, listen

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
SINGLE_TYPES = frozenset({"application/json"})
LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines"})
PROBLEMS_LISTED = 100  # a reply lists at most this many bad lines (the count says how many in all)
REFUSAL_REASONS = (*REASONS, "too_large", "buffer_full", "kafka_unavailable")
STATUS_CODES = (202, 400, 404, 405, 411, 413, 415, 429, 500, 503)
HEALTH_TICK_S = 1.0
_PRODUCER_HEADROOM_BYTES = 16 * 1024  # record and batch overhead above the largest event
REBUILD_BACKOFF_MAX_S = 30.0  # a producer that cannot be rebuilt is tried again at most this often
# Replacements that failed in a row without delivering anything: the broker refuses every
# producer (authorisation, say), and a restart is the remedy left.
REBUILDS_UNDELIVERED_MAX = 3
TOPICS_BACKOFF_MAX_S = 30.0  # and missing topics that cannot be created, at most this often
_FORCE_CLOSE_S = 5.0  # wait for kafka-python's I/O thread to fail the pending records


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


class Acks:
    """The broker's answers for one request's events, for the request to wait on.

    >>> a = Acks(2)
    >>> a.delivered(None); a.wait(0)
    False
    >>> a.delivered(None); a.wait(0), a.acked
    (True, 2)
    >>> b = Acks(3)
    >>> b.failed(KafkaTimeoutError()); b.wait(0), b.error  # one failure settles the request
    (False, 'KafkaTimeoutError')
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.acked = 0
        self.error = ""  # the first failure's class
        self._lock = threading.Lock()
        self._settled = threading.Event()

    # Called on kafka-python's I/O thread.
    def delivered(self, _metadata: object) -> None:
        with self._lock:
            self.acked += 1
            if self.acked == self.expected:
                self._settled.set()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.error = self.error or type(exc).__name__
        self._settled.set()

    def wait(self, timeout_s: float) -> bool:
        """True if the broker acknowledged every event within ``timeout_s``."""
        self._settled.wait(timeout_s)
        with self._lock:
            return self.acked == self.expected and not self.error


Admission = Literal["go", "probe", "refuse"]


class Gate:
    """Whether the producer delivers, so that callers are refused at once while it does not,
    instead of each waiting ``tap.ack_timeout_ms`` for an answer that will not come.

    1. Delivering: every request goes to the producer.
    2. A delivery fails, or a request is not acknowledged in time: not delivering. Requests
       are refused, all but one at a time (the probe), which goes to the producer.
    3. Any acknowledgement (the probe's, or one of events still in the producer): delivering.

    >>> g = Gate()
    >>> g.admit(), g.admit()
    ('go', 'go')
    >>> g.failed("KafkaTimeoutError"), g.admit(), g.admit(), g.reason
    (True, 'probe', 'refuse', 'KafkaTimeoutError')
    >>> g.done("probe"); g.admit()  # the probe got no answer: the next request probes
    'probe'
    >>> g.delivered(), g.admit()
    (True, 'go')
    """

    def __init__(self) -> None:
        self.delivering = True
        self.reason = ""
        self._probing = False
        self._lock = threading.Lock()

    def admit(self) -> Admission:
        with self._lock:
            if self.delivering:
                return "go"
            if self._probing:
                return "refuse"
            self._probing = True
            return "probe"

    def done(self, admission: Admission) -> None:
        """The admitted request has its answer."""
        if admission == "probe":
            with self._lock:
                self._probing = False

    def delivered(self) -> bool:
        """An acknowledgement came; True if that ends a time of not delivering."""
        if self.delivering:  # one call per event: no lock on the common path
            return False
        with self._lock:
            changed = not self.delivering
            self.delivering, self.reason = True, ""
            return changed

    def failed(self, reason: str) -> bool:
        """A delivery failed or timed out; True if that starts a time of not delivering."""
        with self._lock:
            changed = self.delivering
            self.delivering, self.reason = False, reason
            return changed


def producer_failure(producer: KafkaProducer) -> str | None:
    """Why ``producer`` can deliver nothing more, or None while it can.

    kafka-python holds an idempotent producer in its fatal state for good (every later batch
    is failed with that error) when, for instance, a broker that lost its state refuses the
    producer id; it has no public way to ask, so this reads its transaction manager. The
    broker-restart test fails if a kafka-python upgrade moves it.
    """
    if getattr(producer, "_closed", False):
        return "closed"
    manager = getattr(producer, "_transaction_manager", None)
    if manager is not None and manager.has_fatal_error():
        return type(manager.last_error).__name__
    return None


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close, delivering for up to ``timeout_s``, then fail whatever is still pending.

    kafka-python's ``close`` flushes first and raises when that times out, before it would
    abort the pending records: their futures would never resolve, nor their buffer room
    come back. So abort them here.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except KafkaError:
        pass
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()  # fails every pending future (IllegalStateError)
        sender.join(_FORCE_CLOSE_S)
    with contextlib.suppress(KafkaError):
        producer.close(timeout=0)


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
            "Events answered 202: checked, and acknowledged by the broker.",
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
            "Events acknowledged by the broker (a retried request's events may count twice).",
            registry=registry,
        )
        self.failed = Counter(
            "detector_tap_events_failed",
            "Events handed to the producer that the broker never acknowledged (their requests were answered 503).",
            registry=registry,
        )
        self.rebuilds = Counter(
            "detector_tap_producer_rebuilds",
            "Kafka producers replaced because kafka-python held them in a fatal state.",
            registry=registry,
        )
        buffered = Gauge(
            "detector_tap_buffer_events",
            "Events handed to the producer and not yet acknowledged by the broker.",
            registry=registry,
        )
        buffered.set_function(lambda: buffer.events)
        buffered_bytes = Gauge(
            "detector_tap_buffer_bytes",
            "Bytes of events handed to the producer and not yet acknowledged by the broker.",
            registry=registry,
        )
        buffered_bytes.set_function(lambda: buffer.bytes)


def _refusal(status: int, message: str, retry_after_s: int | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
    return Reply(status, {"error": message}, headers)


@dataclass
class Backoff:
    """Attempts that wait 1, 2, 4 ... seconds (at most ``max_s`` given to ``due``) after each
    failure in a row."""

    failures: int = 0  # attempts in a row that raised
    last_s: float = 0.0  # monotonic time of the last attempt

    def due(self, max_s: float) -> bool:
        """Whether an attempt may be made now; if so, it counts as made now."""
        now = time.monotonic()
        if self.failures and now - self.last_s < min(max_s, 2.0**self.failures):
            return False
        self.last_s = now
        return True

    def failed(self) -> None:
        self.failures += 1

    def reset(self) -> None:
        self.failures = 0


class Tap:
    """The events endpoint's logic: check the request, reserve buffer room, hand the events to
    the producer and answer once the broker acknowledged them; and keep a producer that can
    deliver (:meth:`maintain`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: TapSettings,
        max_future_s: float,
        producer: KafkaProducer | None,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        rebuild: Callable[[], KafkaProducer] | None = None,
        create_topics: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = kafka.input_topic
        self.max_future_s = max_future_s
        self.producer = producer
        self.rebuild = rebuild
        self.create_topics = create_topics  # those missing, as at start-up (kafka.create_topics)
        self.clock = clock
        self.buffer = Buffer(settings.buffer_max_events, settings.buffer_max_bytes)
        self.metrics = TapMetrics(registry, self.buffer)
        self.gate = Gate()
        self.stopping = False
        self.rebuild_failed = False  # the last attempt to replace a failed producer raised
        self._rebuild_backoff = Backoff()
        self._rebuilds_since_delivery = 0
        # The broker may not know the topic: a send found none, or a producer failed for good.
        self.topics_in_doubt = False
        self._topics_backoff = Backoff()

    @property
    def healthy(self) -> bool:
        """False when only a restart is left: the producer failed and cannot be rebuilt, or
        its replacements keep failing before they deliver anything."""
        return not self.rebuild_failed and self._rebuilds_since_delivery <= REBUILDS_UNDELIVERED_MAX

    def readiness(self) -> tuple[bool, str]:
        if self.producer is None:
            return False, "no kafka producer (being rebuilt)"
        if not self.gate.delivering:
            return False, f"kafka deliveries failing ({self.gate.reason})"
        return True, ""

    def submit(self, content_type: str, body: bytes) -> Reply:
        try:
            reply = self._submit(content_type, body)
        except Exception as exc:  # a bug, not the sender's fault: still an answer
            # The class only: its message or traceback could quote the request's text.
            log.error("request failed: %s", type(exc).__name__)
            reply = _refusal(500, f"internal error ({type(exc).__name__}): retry the request", 1)
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
        if not accepted:
            return Reply(202, {"accepted": 0})  # an empty body: nothing to lose
        producer = self.producer
        failure = "none built yet" if producer is None else producer_failure(producer)
        if producer is None or failure:
            return self._unavailable(len(accepted), f"producer failed ({failure}), rebuilding it")
        admission = self.gate.admit()
        if admission == "refuse":
            return self._unavailable(len(accepted), f"not delivering: {self.gate.reason}")
        try:
            return self._produce(producer, accepted)
        finally:
            self.gate.done(admission)

    def _produce(self, producer: KafkaProducer, accepted: list[tuple[bytes, bytes]]) -> Reply:
        nbytes = sum(len(value) for _, value in accepted)
        if not self.buffer.reserve(len(accepted), nbytes):
            self.metrics.refused.labels("buffer_full").inc(len(accepted))
            return _refusal(
                429,
                f"buffer full ({self.buffer.events} events, {self.buffer.bytes} bytes waiting for the "
                "broker): slow down and retry after the given seconds",
                self.settings.retry_after_s,
            )
        acks = Acks(len(accepted))
        sent = 0
        try:
            for key, value in accepted:
                future = producer.send(self.topic, key=key, value=value)
                # The buffer's callbacks first: a request answered 202 holds no buffer room.
                future.add_callback(self._delivered, len(value))
                future.add_errback(self._failed, len(value))
                future.add_callback(acks.delivered)
                future.add_errback(acks.failed)
                sent += 1
        except Exception as exc:
            # Typically no topic metadata within tap.send_timeout_ms: the broker is away. Any
            # other error too: the request must get an answer, and its buffer room back.
            unsent = accepted[sent:]
            self.buffer.release(len(unsent), sum(len(v) for _, v in unsent))
            reason = type(exc).__name__
            if isinstance(exc, KafkaTimeoutError):
                # No partitions for the topic within tap.send_timeout_ms: the broker is away,
                # or it does not know the topic (lost with its state, say).
                reason, self.topics_in_doubt = "no answer", True
            self._not_delivering(reason)
            return self._unavailable(len(accepted), reason)
        if acks.wait(self.settings.ack_timeout_ms / 1000):
            self.metrics.accepted.inc(len(accepted))
            return Reply(202, {"accepted": len(accepted)})
        reason = acks.error or f"no acknowledgement within tap.ack_timeout_ms ({self.settings.ack_timeout_ms} ms)"  # fmt: skip
        self._not_delivering(reason)
        return self._unavailable(
            len(accepted), f"{reason}; {acks.acked} of {len(accepted)} events acknowledged"
        )

    def _unavailable(self, events: int, reason: str) -> Reply:
        self.metrics.refused.labels("kafka_unavailable").inc(events)
        return _refusal(
            503,
            f"kafka unavailable ({reason}): retry the whole request after the given seconds "
            "(events that arrive twice are dropped by event_id)",
            self.settings.retry_after_s,
        )

    # Producer callbacks run on kafka-python's I/O thread: keep them short.
    def _delivered(self, nbytes: int, _metadata: object) -> None:
        self.buffer.release(1, nbytes)
        self.metrics.delivered.inc()
        self._rebuilds_since_delivery = 0
        if self.gate.delivered():
            log.info("kafka delivers to %s again", self.topic)

    def _failed(self, nbytes: int, exc: BaseException) -> None:
        self.buffer.release(1, nbytes)
        self.metrics.failed.inc()
        self._not_delivering(type(exc).__name__)

    def _not_delivering(self, reason: str) -> None:
        if self.gate.failed(reason):
            log.warning("kafka not delivering to %s (%s): answering 503", self.topic, reason)

    def maintain(self) -> None:
        """Replace a producer that can deliver nothing more, and create the topics a broker
        that lost its state no longer has.

        Called by the tick loop, never by a request: building a producer or an admin client
        waits for a broker for up to tap.send_timeout_ms. Requests are refused with 503
        meanwhile; the old producer's pending events fail, so the requests waiting on them
        are answered 503.
        """
        if self.stopping:
            return
        producer = self.producer
        failure = None if producer is None else producer_failure(producer)
        if producer is not None and failure:
            log.error("kafka producer failed for good (%s): rebuilding it", failure)
            self.producer = None
            # A broker answered that it lost its state, its topics with it: check them now.
            self.topics_in_doubt = True
            self._topics_backoff.reset()
            close_producer(producer, 0)
        if self.topics_in_doubt:
            self._create_missing_topics()  # first: the new producer's first send finds them
        if self.producer is None:
            self._rebuild()

    def _create_missing_topics(self) -> None:
        """The topics the broker does not know, created as at start-up (``kafka.create_topics``,
        with ``kafka.topic_partitions``). A broker that creates the topics it is asked about
        (Kafka's ``auto.create.topics.enable``, Tansu) may have been first, with its own
        partition count: kafka-python 3.0's producer always asks it to."""
        if self.create_topics is None:
            self.topics_in_doubt = False
            return
        if not self._topics_backoff.due(TOPICS_BACKOFF_MAX_S):
            return
        try:
            self.create_topics()
        except Exception as exc:  # the broker is away, most likely: tried again later
            self._topics_backoff.failed()
            log.warning("cannot check the kafka topics, trying again: %s", exc)
            return
        self._topics_backoff.reset()
        self.topics_in_doubt = False
        log.info("kafka topics checked; those missing were created")

    def _rebuild(self) -> None:
        if self.rebuild is None:
            self.rebuild_failed = True
            return
        if not self._rebuild_backoff.due(REBUILD_BACKOFF_MAX_S):
            return  # backing off after failed attempts
        try:
            self.producer = self.rebuild()
        except Exception as exc:  # whatever it is, the tap has no producer: say so, retry later
            self._rebuild_backoff.failed()
            self.rebuild_failed = True
            log.error("cannot rebuild the kafka producer (%s): /healthz answers 503", exc)
            return
        self.rebuild_failed = False
        self._rebuild_backoff.reset()
        self._rebuilds_since_delivery += 1
        self.metrics.rebuilds.inc()
        log.warning("kafka producer rebuilt")


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
        self._server = listen(host, port, _handler(tap), "tap")
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tap", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> TapServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever that never ran
            self._server.shutdown()
        self._server.server_close()


class TapHealth(Health):
    """Alive while the loop turns and the tap has a producer, or can rebuild one."""

    def __init__(self) -> None:
        super().__init__()
        self.producer_ok = True

    @property
    def alive(self) -> bool:
        return self.producer_ok and super().alive

    @property
    def problem(self) -> str:
        if not self.producer_ok:
            return "kafka producer failed and cannot be rebuilt: restart the tap"
        return super().problem


def make_tap_producer(kafka: KafkaSettings, tap: TapSettings, **overrides: Any) -> KafkaProducer:
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
        **overrides,
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
    health = TapHealth()
    health_server = HealthServer(
        settings.metrics.host, settings.metrics.port, registry, health
    ).start()
    # Rebuilds, and topics created again, run on the tick loop: they wait for a broker as
    # long as a send would.
    rebuild_kafka = settings.kafka.model_copy(
        update={"bootstrap_timeout_ms": settings.tap.send_timeout_ms}
    )
    create = settings.kafka.create_topics  # at start-up, and again if the broker lost them
    tap = Tap(
        settings.kafka,
        settings.tap,
        settings.features.max_future_s,
        None,
        registry,
        rebuild=lambda: make_tap_producer(rebuild_kafka, settings.tap),
        create_topics=partial(ensure_topics, rebuild_kafka) if create else None,
    )
    server = None
    try:
        # Bound before Kafka is reached: a port in use fails at once, with no client to stop.
        server = TapServer(settings.tap.host, settings.tap.port, tap)
        if create:
            ensure_topics(settings.kafka)
        tap.producer = make_tap_producer(settings.kafka, settings.tap)
        server.start()
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
            tap.maintain()
            health.producer_ok = tap.healthy
            health.set_ready(*tap.readiness())
        tap.stopping = True
        health.set_ready(False, "shutting down")
        if tap.producer is not None:
            log.info("draining %d buffered events", tap.buffer.events)
            try:
                tap.producer.flush(timeout=settings.tap.drain_timeout_s)
            except KafkaError as exc:
                log.warning("%d buffered events not delivered at shutdown: %s", tap.buffer.events, exc)  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        if tap.producer is not None:
            close_producer(tap.producer, 0)  # drained above; what is left is failed, not waited for
        health_server.stop()
