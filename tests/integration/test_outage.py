"""Redis stops mid-stream: the worker reports not ready, keeps its batch uncommitted, and resumes."""

from __future__ import annotations

import time

import pytest

from detector.config import Settings
from detector.embedded import EmbeddedRedis
from detector_lab.sim.basic import BasicTraffic, generate
from tests.integration.helpers import account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = pytest.mark.integration

OUTAGE_S = 20.0


@pytest.mark.parametrize("restart", ["unreachable_with_data_kept", "restarted_empty"])
def test_redis_outage_pauses_then_resumes_without_losing_events(
    service_settings: Settings, restart: str
) -> None:
    events = generate(BasicTraffic(benign_accounts=10, hours=1.0, seed=3))
    half = len(events) // 2
    with EmbeddedRedis() as redis_server:  # a Redis of its own, to stop and start again
        settings = service_settings.with_overrides(
            redis={"url": redis_server.url, "socket_timeout_s": 1.0}
        )
        with RunningService(settings) as service:
            produce(settings, events[:half])
            wait_until(  # written, not only processed: the idle worker flushes its last batch
                lambda: sum(account_event_counts(settings).values()) >= half, 60, "first half"
            )
            if restart == "restarted_empty":
                redis_server.kill()
            else:
                redis_server.freeze()  # connections hang: the worker sees timeouts
            produce(settings, events[half:])
            wait_until(
                lambda: service.get("/readyz")[0] == 503, 30, "not ready while Redis is down"
            )
            down_since = time.monotonic()
            while time.monotonic() - down_since < OUTAGE_S:
                assert service.get("/readyz")[0] == 503
                assert service.get("/healthz")[0] == 200  # alive: it is waiting, not stuck
                assert service.metric("detector_events_applied_total") == half
                time.sleep(1.0)
            retries = service.metric("detector_dependency_errors_total", {"dependency": "redis"})
            # Backoff doubles from 0.2 s to at most 2 s: several tries in 20 s, not hundreds.
            assert 3 <= retries <= OUTAGE_S / 0.2

            if restart == "restarted_empty":
                redis_server.start()  # same port, empty: the restart lost the data
            else:
                redis_server.thaw()
            wait_until(lambda: service.get("/readyz")[0] == 200, 60, "ready again")
            wait_until(
                lambda: service.metric("detector_events_applied_total") >= len(events),
                60,
                "second half applied",
            )
        expected: dict[str, int] = {}
        counted = events if restart == "unreachable_with_data_kept" else events[half:]
        for e in counted:  # none lost, none twice
            expected[e["account_id"]] = expected.get(e["account_id"], 0) + 1
        assert account_event_counts(settings) == expected
