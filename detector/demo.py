"""``detector demo``: embedded broker and Redis, a synthetic traffic source, the service, live alerts."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from kafka import KafkaConsumer
from rich.console import Console

from detector.app import run_service
from detector.config import Settings
from detector.embedded import embedded_services, free_port
from detector.io.kafka import ensure_topics, make_producer
from detector.sim.basic import BasicTraffic, generate

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


def run_demo(settings: Settings, duration_s: float, console: Console, stop: threading.Event) -> int:
    """Returns the number of alerts seen."""
    with embedded_services() as (redis_server, kafka_server):
        assert redis_server and kafka_server
        settings = settings.with_overrides(
            kafka={"bootstrap_servers": kafka_server.bootstrap_servers},
            redis={"url": redis_server.url},
            metrics={"port": settings.metrics.port or free_port()},
        )
        console.print(
            f"[bold]embedded services[/]: Kafka-compatible broker (Tansu) on {kafka_server.bootstrap_servers}, "
            f"redis-server on {redis_server.url}"
        )
        ensure_topics(settings.kafka)
        service_stop = threading.Event()
        ports: list[int] = []
        service = threading.Thread(
            target=run_service,
            args=(settings, service_stop),
            kwargs={"on_started": ports.append},
            name="service",
            daemon=True,
        )
        service.start()
        traffic = generate(BasicTraffic())
        producer = threading.Thread(
            target=_produce,
            args=(settings, traffic, duration_s * 0.6, stop),
            name="traffic",
            daemon=True,
        )
        producer.start()
        while not ports and service.is_alive():
            time.sleep(0.05)
        port = ports[0] if ports else settings.metrics.port
        console.print(
            f"[bold]service[/] running: metrics http://{settings.metrics.host}:{port}/metrics, "
            f"health /healthz and /readyz; producing {len(traffic)} events "
            f"(3 hours of event time) + {len(BAD_MESSAGES)} broken messages to {settings.kafka.input_topic}"
        )
        console.print(f"alerts from [bold]{settings.kafka.alerts_topic}[/] (Ctrl-C to stop):\n")
        seen = _print_alerts(settings, duration_s, console, stop)
        service_stop.set()
        service.join(timeout=30)
        console.print(
            f"\n[bold]{seen}[/] alerts; invalid messages are in [bold]{settings.kafka.dlq_topic}[/]. Stopped."
        )
        return seen


def _produce(
    settings: Settings, events: list[dict[str, Any]], over_s: float, stop: threading.Event
) -> None:
    producer = make_producer(settings.kafka)
    for bad in BAD_MESSAGES:
        producer.send(settings.kafka.input_topic, key=b"broken", value=bad)
    pause = over_s / max(1, len(events))
    for i, event in enumerate(events):
        if stop.is_set():
            break
        producer.send(
            settings.kafka.input_topic, key=event["account_id"].encode(), value=orjson.dumps(event)
        )
        if i % 50 == 0:
            time.sleep(pause * 50)
    producer.flush()
    producer.close()


def _print_alerts(
    settings: Settings, duration_s: float, console: Console, stop: threading.Event
) -> int:
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
