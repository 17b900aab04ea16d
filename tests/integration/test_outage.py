"""Redis stops mid-stream: the worker reports not ready, keeps its batch uncommitted, and resumes."""

from __future__ import annotations

import pytest

from detector.config import Settings
from detector.embedded import EmbeddedRedis
from detector.sim.basic import BasicTraffic, generate
from tests.integration.helpers import account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = pytest.mark.integration


def test_redis_outage_pauses_then_resumes_without_losing_events(service_settings: Settings) -> None:
    events = generate(BasicTraffic(benign_accounts=10, hours=1.0, seed=3))
    half = len(events) // 2
    with EmbeddedRedis() as redis_server:  # a Redis of its own, to stop and start again
        settings = service_settings.with_overrides(redis={"url": redis_server.url})
        with RunningService(settings) as service:
            produce(settings, events[:half])
            wait_until(
                lambda: service.metric("detector_events_applied_total") >= half, 60, "first half"
            )
            committed = service.metric("detector_events_consumed_total")

            redis_server.kill()
            produce(settings, events[half:])
            wait_until(
                lambda: service.get("/readyz")[0] == 503, 30, "not ready while Redis is down"
            )
            assert service.get("/healthz")[0] == 200  # alive: it is waiting, not stuck
            wait_until(
                lambda: (
                    service.metric("detector_dependency_errors_total", {"dependency": "redis"}) >= 2
                ),
                30,
                "retries with backoff",
            )
            assert (
                service.metric("detector_events_applied_total") == half
            )  # nothing applied meanwhile

            redis_server.start()  # same port, empty: the restart lost the data (no persistence)
            wait_until(lambda: service.get("/readyz")[0] == 200, 60, "ready again")
            wait_until(
                lambda: service.metric("detector_events_applied_total") >= len(events),
                60,
                "second half applied",
            )
        assert service.metric("detector_events_consumed_total") >= committed
        # Every event of the second half is in the fresh Redis once: none lost, none twice.
        second = {}
        for e in events[half:]:
            second[e["account_id"]] = second.get(e["account_id"], 0) + 1
        assert account_event_counts(settings) == second
