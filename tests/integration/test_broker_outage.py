"""The broker stops and comes back: the worker reconnects and resumes."""

from __future__ import annotations

import time

import pytest

from detector.config import Settings
from detector.embedded import EmbeddedKafka
from detector.io.kafka import ensure_topics
from tests.integration.helpers import account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = pytest.mark.integration


def _events(account: str, n: int) -> list[dict]:
    return [
        {"event_id": f"{account}-{i}", "ts": 1.0e9 + i, "account_id": account, "model": "m"}
        for i in range(n)
    ]


def _unready(service: RunningService) -> bool:
    status, text = service.get("/readyz")
    errors = service.metric("detector_dependency_errors_total", {"dependency": "kafka"})
    return status == 503 and "kafka unavailable" in text and errors >= 1


def test_worker_resumes_after_the_broker_restarts(service_settings: Settings) -> None:
    broker = EmbeddedKafka().start()  # a broker of its own, to stop and start again
    try:
        settings = service_settings.with_overrides(
            kafka={"bootstrap_servers": broker.bootstrap_servers}
        )
        with RunningService(settings) as service:
            produce(settings, _events("before", 50))
            wait_until(
                lambda: service.metric("detector_events_applied_total") >= 50, 60, "events before"
            )
            assert service.get("/readyz")[0] == 200
            broker.kill()
            # The worker keeps polling a broker that is gone, and says so.
            wait_until(lambda: _unready(service), 30, "readyz 503 naming kafka, and an error")
            assert service.get("/healthz")[0] == 200  # alive: restarting it would not help
            time.sleep(2)
            assert service.thread.is_alive()
            broker.start()  # same port; in-memory, so it comes back empty
            ensure_topics(settings.kafka)
            wait_until(lambda: service.get("/readyz")[0] == 200, 60, "ready again")
            # The restarted broker is empty. "resumed" hashes to the other partition than
            # "before": on that one the worker's position is 50, and if 50 new events land
            # there before it fetches, the position is valid again and they are skipped.
            produce(settings, _events("resumed", 50))
            wait_until(
                lambda: service.metric("detector_events_applied_total") >= 100, 90, "events after"
            )
        assert account_event_counts(settings) == {"before": 50, "resumed": 50}
    finally:
        broker.stop()
