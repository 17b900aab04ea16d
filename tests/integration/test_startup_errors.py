"""A command that cannot start says why in one line that names the setting, and exits non-zero:
the real command line in a child process, with the real (embedded) Redis and broker."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

import detector.programs.demo
from detector.config import Settings
from detector.embedded import EmbeddedKafka, free_port
from detector.errors import RedisUnavailable
from detector.io.kafka import ensure_topics
from detector.metrics import Metrics
from detector.programs.demo import run_demo
from tests.integration.helpers import run_detector

pytestmark = pytest.mark.integration

BOOTSTRAP_WAIT_MS = 1500
EXIT_WITHIN_S = 30.0  # well above the wait: what is measured is "bounded", not a tight figure


def _detector(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = run_detector(*args, env=env, timeout_s=EXIT_WITHIN_S)
    return done, time.monotonic() - started


# A log line of one of kafka-python's loggers (all named kafka.*), in the CLI's log format.
LIBRARY_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ kafka[.:]")


def _no_library_noise(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert not [line for line in stderr.splitlines() if LIBRARY_LINE.match(line)], stderr


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    return free_port()


@pytest.mark.parametrize("command", ["run", "tap", "pager"])
def test_an_unreachable_broker_fails_start_up_in_one_line(
    command: str, redis_url: str, closed_port: int
) -> None:
    # regression: 30 s of kafka-python error lines, then a 40-line KafkaTimeoutError traceback
    done, took_s = _detector(
        command,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port}",
            "REDIS_URL": redis_url,  # `run` waits for Redis first: give it one that answers
            "DETECTOR__KAFKA__BOOTSTRAP_TIMEOUT_MS": str(BOOTSTRAP_WAIT_MS),
            "DETECTOR__METRICS__PORT": "0",
            "DETECTOR__TAP__PORT": "0",
        },
    )
    assert done.returncode == 2, done.stderr
    assert took_s >= BOOTSTRAP_WAIT_MS / 1000  # it waited for a broker that may be starting
    _no_library_noise(done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: no Kafka broker answers at kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS) "
        f"127.0.0.1:{closed_port} after 1.5 s (127.0.0.1:{closed_port} connection refused): "
        "set it to the brokers' host:port, or start the broker "
        "(kafka.bootstrap_timeout_ms sets the wait)"
    ]


def test_a_broker_that_comes_up_during_the_wait_is_used(service_settings: Settings) -> None:
    """The start-up wait is a wait, not a single try: a broker a second late is fine."""
    broker = EmbeddedKafka()  # its port is chosen now; it starts a second into the wait
    settings = service_settings.with_overrides(
        kafka={"bootstrap_servers": broker.bootstrap_servers, "bootstrap_timeout_ms": 15000}
    )
    waiting = _Task(ensure_topics, settings.kafka)
    try:
        time.sleep(1.0)
        assert waiting.is_alive()
        # From this thread: the broker dies with the thread that started it (PDEATHSIG).
        broker.start()
        waiting.join(15.0)
        assert not waiting.is_alive() and waiting.error is None, waiting.error
    finally:
        broker.stop()


class _Task(threading.Thread):
    def __init__(self, target: Callable[..., object], *args: Any) -> None:
        super().__init__(daemon=True)
        self.call, self.args = target, args
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.call(*self.args)
        except BaseException as exc:
            self.error = exc


def test_the_demo_fails_when_its_metrics_port_is_in_use() -> None:
    # regression: the service thread died, the demo printed "service running", waited,
    # printed "0 alerts" and exited 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done, _ = _detector("demo", "--duration", "20", env={"DETECTOR__METRICS__PORT": str(port)})
    assert done.returncode == 2
    assert "service running" not in done.stdout and "alerts;" not in done.stdout
    _no_library_noise(done.stderr)
    assert done.stderr.splitlines()[-1] == (
        f"error: metrics.port {port} on 127.0.0.1 is in use: set metrics.port (or "
        "DETECTOR__METRICS__PORT) to a free port, or 0 for any"
    )


def _dies_once_ready(
    settings: Settings,
    stop: threading.Event,
    registry: CollectorRegistry,
    on_started: Callable[[int], None],
    **_: Any,
) -> None:
    """Stands in for the service: starts, says it is ready, then fails as a real one can."""
    on_started(0)
    Metrics(registry).ready.set(1)
    time.sleep(1.0)
    raise RedisUnavailable("redis at redis://127.0.0.1:1/0 does not answer")


def test_the_demo_fails_when_its_service_dies_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(detector.programs.demo, "run_service", _dies_once_ready)
    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="does not answer"):
        run_demo(
            Settings().with_overrides(metrics={"port": 0}),
            60.0,
            Console(file=out, width=200),
            threading.Event(),
        )
    assert time.monotonic() - started < 30  # noticed at once, not after the 60 s
    assert "service running" in out.getvalue()  # it did run for a while
    assert "Stopped." not in out.getvalue() and "alerts;" not in out.getvalue()


def test_a_tap_port_in_use_fails_the_tap_in_one_line(kafka_bootstrap: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done, _ = _detector(
            "tap",
            env={
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "DETECTOR__METRICS__PORT": "0",
                "DETECTOR__TAP__PORT": str(port),
            },
        )
    assert done.returncode == 2, done.stderr
    _no_library_noise(done.stderr)
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: tap.port {port} on 127.0.0.1 is in use: set tap.port (or DETECTOR__TAP__PORT) "
        "to a free port, or 0 for any"
    ]
