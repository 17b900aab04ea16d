"""A real Prometheus scrapes a running worker, tap, pager and the Redis exporter: every query
of the dashboard returns data without error, and the alert rules evaluate cleanly."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.programs.dashboard import DASHBOARD_PATH, dashboard_queries
from detector.programs.pager import run_pager
from detector.programs.tap import EVENTS_PATH, run_tap
from detector_lab.sim.basic import BasicTraffic, generate
from tests.integration.helpers import produce, wait_until
from tests.integration.test_service import RunningService
from tests.tools import (
    DEPLOY,
    http_get,
    prometheus,
    prometheus_query,
    redis_exporter,
)

pytestmark = pytest.mark.integration

TRAFFIC = BasicTraffic(benign_accounts=25, hours=2.0, abusive_per_hour=500.0, seed=11)
BAD = [b"{not json", b'"a string"']
SCRAPE = "1s"
RATE_WINDOW = "30s"  # stands in for Grafana's $__rate_interval
RULES = DEPLOY / "prometheus" / "rules" / "detector.rules.yml"


def _config(targets: dict[str, str], directory: Path) -> Path:
    config = {
        "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def pager_port(service_settings: Settings, unique: str) -> Iterator[int]:
    ports: list[int] = []
    stop = threading.Event()
    settings = service_settings.with_overrides(
        pager={"alertmanager_urls": ["http://127.0.0.1:9"], "group_id": f"pager-{unique}"}
    )
    thread = threading.Thread(
        target=run_pager,
        args=(settings, stop, CollectorRegistry()),
        kwargs={"on_started": ports.append},
        daemon=True,
    )
    thread.start()
    wait_until(lambda: ports, 10, "the pager's metrics")
    yield ports[0]
    stop.set()
    thread.join(30)


@pytest.fixture
def tap_ports(service_settings: Settings) -> Iterator[tuple[int, int]]:
    ports: list[tuple[int, int]] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=run_tap,
        args=(service_settings.with_overrides(tap={"port": 0}), stop, CollectorRegistry()),
        kwargs={"on_started": lambda events, metrics: ports.append((events, metrics))},
        daemon=True,
    )
    thread.start()
    wait_until(lambda: ports, 30, "the tap")
    yield ports[0]
    stop.set()
    thread.join(30)


def _post_to_tap(port: int, events: list[dict]) -> int:
    body = b"".join(orjson.dumps(e) + b"\n" for e in events)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{EVENTS_PATH}",
        data=body,
        headers={"Content-Type": "application/x-ndjson"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status


def _answers(prom: str, expr: str, timeout_s: float = 20.0) -> bool:
    """True once the query returns data; fails the test at once on an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = prometheus_query(prom, expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        if answer["data"]["result"]:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    service_settings: Settings,
    redis_url: str,
    pager_port: int,
    tap_ports: tuple[int, int],
    tmp_path: Path,
) -> None:
    queries = dashboard_queries(orjson.loads(DASHBOARD_PATH.read_bytes()))
    events = generate(TRAFFIC)
    with RunningService(service_settings) as worker, redis_exporter(redis_url) as exporter:
        targets = {
            "detector": f"127.0.0.1:{worker.ports[0]}",
            "detector-pager": f"127.0.0.1:{pager_port}",
            "detector-tap": f"127.0.0.1:{tap_ports[1]}",
            "redis": exporter,
        }
        with prometheus(_config(targets, tmp_path), tmp_path) as prom:
            # Part of the traffic through the tap, the rest straight to the topic.
            assert _post_to_tap(tap_ports[0], events[:200]) == 202
            produce(service_settings, events[200:], BAD)
            wait_until(
                lambda: worker.metric("detector_events_consumed_total") >= len(events) + len(BAD),
                120,
                "the worker to consume everything",
            )

            def scraped_everything() -> bool:
                answer = prometheus_query(prom, "sum(detector_events_consumed_total)")
                result = answer.get("data", {}).get("result", [])
                return bool(result) and float(result[0]["value"][1]) >= len(events) + len(BAD)

            wait_until(scraped_everything, 30, "Prometheus to scrape the final counts")
            # Targets are scraped on their own schedules: give each query a few scrapes.
            empty = [
                q for q in queries if not _answers(prom, q.replace("$__rate_interval", RATE_WINDOW))
            ]
            assert not empty, f"dashboard queries without data: {empty}"

            status, body = http_get(f"{prom}/api/v1/rules")
            assert status == 200
            groups = orjson.loads(body)["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            defined = yaml.safe_load(RULES.read_text())["groups"]
            assert len(rules) == sum(len(group["rules"]) for group in defined)
            bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
            assert not bad, f"rules that failed to evaluate: {bad}"

            # One late scrape is not a failure: every target answered within the last few.
            def all_up() -> bool:
                answer = prometheus_query(prom, "min(max_over_time(up[15s]))")
                result = answer.get("data", {}).get("result", [])
                return bool(result) and float(result[0]["value"][1]) == 1.0

            wait_until(all_up, 30, "every target to be scraped")
