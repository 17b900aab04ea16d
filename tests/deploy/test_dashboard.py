"""The dashboard is generated from code: the committed JSON is what the code makes, and it
covers what operators need. (Its queries run against a real Prometheus in
tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import json

import yaml

from detector.programs.dashboard import DASHBOARD_PATH, build_dashboard, dashboard_queries, render
from tests.tools import DEPLOY


def test_committed_json_is_what_the_code_generates() -> None:
    assert DASHBOARD_PATH.read_text(encoding="utf-8") == render(build_dashboard()), (
        "deploy/grafana/dashboards/detector.json is stale: run `python -m detector.programs.dashboard`"
    )


def test_every_panel_uses_the_provisioned_data_source() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    [source] = provisioned["datasources"]
    model = json.loads(DASHBOARD_PATH.read_text())
    panels = [p for p in model["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"


def test_the_issue_s_panels_are_there() -> None:
    queries = "\n".join(dashboard_queries(build_dashboard()))
    for metric in (
        "detector_events_consumed_total",  # throughput
        "detector_consumer_lag_messages",  # lag
        "detector_batch_duration_seconds_bucket",  # latency percentiles
        "detector_events_invalid_total",  # dead letters by reason
        "detector_alerts_total",  # alerts by type and severity
        "detector_pager_active_campaigns",  # active campaigns
        "detector_redis_roundtrip_seconds_bucket",  # Redis latency
        "redis_memory_used_bytes",  # Redis memory (exporter)
    ):
        assert metric in queries, metric
    assert "sum by (reason)" in queries and "sum by (type, severity)" in queries


def test_refids_are_unique_within_each_panel() -> None:
    for panel in build_dashboard()["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_provider_path_is_where_compose_mounts_the_json() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "detector.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{path}:ro" in volumes
