"""``detector demo``: embedded broker and Redis, a synthetic traffic source, the service, live alerts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry
from rich.console import Console

from detector.app import run_service
from detector.config import Settings
from detector.embedded import embedded_services
from detector.errors import DetectorError
from detector.io.kafka import ensure_topics, make_producer
from detector_lab.sim.basic import BasicTraffic, generate

SEVERITY_STYLE = {
    "low": "dim",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}
# A few broken messages, to show where bad input goes.
BAD_MESSAGES = (
    b"not json at all",
    b"[1, 2, 3]",
    b'{"event_id": "x", "ts": -5, "account_id": "a", "model": "m"}',
)
SERVICE_STOP_TIMEOUT_S = 30.0  # the worker finishes its batch, writes it and leaves the group
TRAFFIC_STOP_TIMEOUT_S = 15.0  # the traffic producer flushes what it sent


class _Task(threading.Thread):
    """A thread that keeps what its target raised, so that the demo reports a dead component
    instead of a thread traceback followed by a demo carrying on without it."""

    def __init__(self, name: str, target: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        super().__init__(name=name, daemon=True)
        self._call = (target, args, kwargs)
        self.error: BaseException | None = None

    def run(self) -> None:
        target, args, kwargs = self._call
        try:
            target(*args, **kwargs)
        except BaseException as exc:  # re-raised in the demo's own thread
            self.error = exc

    @property
    def failed(self) -> bool:
        return self.error is not None


def run_demo(settings: Settings, duration_s: float, console: Console, stop: threading.Event) -> int:
    """Returns the number of alerts seen; raises what the service or the traffic failed with.

    Stops in dependency order: the alert reader, the traffic, the service, and only then
    (leaving ``embedded_services``) the broker and Redis, so no client outlives its server.
    """
    with embedded_services() as (redis_server, kafka_server):
        assert redis_server and kafka_server
        settings = settings.with_overrides(
            kafka={"bootstrap_servers": kafka_server.bootstrap_servers},
            redis={"url": redis_server.url},
        )
        console.print(
            f"[bold]embedded services[/]: Kafka-compatible broker (Tansu) on {kafka_server.bootstrap_servers}, "
            f"redis-server on {redis_server.url}"
        )
        ensure_topics(settings.kafka)
        registry = CollectorRegistry()
        ports: list[int] = []
        service_stop = threading.Event()
        service = _Task(
            "service", run_service, settings, service_stop, registry, on_started=ports.append
        )
        traffic_stop = threading.Event()
        events = generate(BasicTraffic())
        traffic = _Task("traffic", _produce, settings, events, duration_s * 0.6, traffic_stop)
        seen = 0
        service.start()
        try:
            ready = _until_ready(service, registry, duration_s, stop)
            if not ready and service.is_alive() and not stop.is_set():
                raise DetectorError(
                    f"the demo's service was not ready within {duration_s:g} s (see its log above)"
                )
            if ready:
                console.print(
                    f"[bold]service[/] running: metrics http://{settings.metrics.host}:{ports[0]}/metrics, "
                    f"health /healthz and /readyz; producing {len(events)} events "
                    f"(3 hours of event time) + {len(BAD_MESSAGES)} broken messages to {settings.kafka.input_topic}"
                )
                console.print(
                    f"alerts from [bold]{settings.kafka.alerts_topic}[/] (Ctrl-C to stop):\n"
                )
                traffic.start()
                seen = _print_alerts(settings, duration_s, console, stop, service, traffic)
        finally:
            traffic_stop.set()
            if traffic.ident is not None:
                traffic.join(TRAFFIC_STOP_TIMEOUT_S)
            service_stop.set()
            service.join(SERVICE_STOP_TIMEOUT_S)
        _raise_failure(service, service_stop)
        if traffic.ident is not None:
            _raise_failure(traffic, traffic_stop)
        console.print(
            f"\n[bold]{seen}[/] alerts; invalid messages are in [bold]{settings.kafka.dlq_topic}[/]. Stopped."
        )
        return seen


def _until_ready(
    service: _Task, registry: CollectorRegistry, timeout_s: float, stop: threading.Event
) -> bool:
    """Whether the service said it is ready (its worker loop runs) before it died, the time
    was up or Ctrl-C: "service running" is printed only for a service that runs."""
    deadline = time.monotonic() + timeout_s
    while service.is_alive() and not stop.is_set() and time.monotonic() < deadline:
        if registry.get_sample_value("detector_ready") == 1:
            return True
        time.sleep(0.05)
    return False


def _raise_failure(task: _Task, asked_to_stop: threading.Event) -> None:
    if task.error is not None:
        raise task.error
    if task.is_alive():
        raise DetectorError(f"the demo's {task.name} did not stop within its time")
    if not asked_to_stop.is_set():  # gone before its time without an error: still no success
        raise DetectorError(f"the demo's {task.name} stopped on its own")


def _produce(
    settings: Settings, events: list[dict[str, Any]], over_s: float, stop: threading.Event
) -> None:
    producer = make_producer(settings.kafka)
    try:
        for bad in BAD_MESSAGES:
            producer.send(settings.kafka.input_topic, key=b"broken", value=bad)
        pause = over_s / max(1, len(events))
        for i, event in enumerate(events):
            if stop.is_set():
                break
            producer.send(
                settings.kafka.input_topic,
                key=event["account_id"].encode(),
                value=orjson.dumps(event),
            )
            if i % 50 == 0 and stop.wait(pause * 50):
                break
        producer.flush()
    finally:
        producer.close()


def _print_alerts(
    settings: Settings,
    duration_s: float,
    console: Console,
    stop: threading.Event,
    service: _Task,
    traffic: _Task,
) -> int:
    """Alerts as they arrive, until the time is up, Ctrl-C, or the service or traffic fails."""
    consumer = KafkaConsumer(
        settings.kafka.alerts_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen = 0
    deadline = time.monotonic() + duration_s
    try:
        while time.monotonic() < deadline and not stop.is_set():
            if not service.is_alive() or traffic.failed:
                break  # the caller raises what went wrong
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    seen += 1
                    console.print(format_alert(orjson.loads(message.value)))
    finally:
        consumer.close()
    return seen


def format_alert(alert: dict[str, Any]) -> str:
    style = SEVERITY_STYLE.get(alert["severity"], "")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(alert["ts"]))
    lines = [
        f"[{style}]{alert['severity'].upper():8}[/] {when}Z  {alert['type']:<14} "
        f"{alert['subject_type']} [bold]{alert['subject_id']}[/]  score {alert['score']:.2f}"
    ]
    lines += [f"           - {reason}" for reason in alert["reasons"]]
    anomaly = alert.get("evidence", {}).get("anomaly")
    if anomaly and anomaly["score"] > 0:
        lines.append(f"           - anomaly model score {anomaly['score']:.2f}")
    elif anomaly:  # HalfSpaceTrees scores 0 until its first window is learned
        lines.append(
            f"           - anomaly model warming up ({anomaly['learned_events']} snapshots learned)"
        )
    return "\n".join(lines)
