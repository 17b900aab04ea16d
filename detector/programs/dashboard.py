"""The Grafana dashboard, as code (grafana-foundation-sdk), written as provisioning JSON.

``python -m detector.programs.dashboard`` writes ``deploy/grafana/dashboards/detector.json``;
a test regenerates it and compares it with the committed file, and another runs every
query against a real Prometheus scraping a running detector. Panels fed by the Redis
exporter (``redis_*`` metrics, oliver006/redis_exporter) say so in their description.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DASHBOARD_PATH = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "detector.json"
)
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")  # provisioned with this uid
RATE = "$__rate_interval"  # Grafana picks a window of at least four scrapes
NEEDS_EXPORTER = "From the Redis exporter (redis_* metrics; the Compose stack runs one)."

Query = tuple[str, str]  # (PromQL, legend)


def _targets(queries: Sequence[Query]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        for i, (expr, legend) in enumerate(queries)
    ]


def _series(
    title: str, unit: str, description: str, queries: Sequence[Query], width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def _stat(title: str, description: str, queries: Sequence[Query], width: int = 6) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit("short")
        .datasource(DATASOURCE)
        .span(width)
        .height(8)
    )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def _quantiles(metric: str, by: str = "") -> list[Query]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
            f"p{round(q * 100)}{suffix}",
        )
        for q in (0.5, 0.9, 0.99)
    ]


def build_dashboard() -> dict[str, Any]:
    """The dashboard model, as Grafana's JSON."""
    lag = "max by (topic, partition) (detector_consumer_lag_messages)"  # one report per partition
    board = (
        Dashboard("LLM distillation detector")
        .uid("llm-distill-detector")
        .description("Throughput, lag, latency, input quality, alerts, campaigns, Redis, tap and pager.")
        .tags(["detector", "llm-abuse"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
        .with_row(Row("Throughput and lag"))
        .with_panel(_series("Events per second", "ops", "Messages read from the query topic; valid events applied to state; duplicates skipped (redelivery or producer); late events.", [
            (f"sum(rate(detector_events_consumed_total[{RATE}]))", "consumed"),
            (f"sum(rate(detector_events_applied_total[{RATE}]))", "applied"),
            (f"sum(rate(detector_events_duplicate_total[{RATE}]))", "duplicates"),
            (f"sum(rate(detector_events_late_total[{RATE}]))", "late"),
        ], width=9))
        .with_panel(_stat("Workers ready", "Workers consuming with their dependencies answering, of the workers Prometheus scrapes, and the input partitions they hold (fewer than the topic has: some are between owners).", [
            ("sum(detector_ready)", "ready"),
            ('count(up{job="detector"})', "scraped"),
            ("sum(detector_assigned_partitions)", "partitions"),
        ], width=3))
        .with_panel(_series("Consumer lag", "short", "Messages between the group's position and each partition's end; each partition counted once.", [
            (f"sum by (topic) ({lag})", "{{topic}}"),
            (lag, "{{topic}}[{{partition}}]"),
        ]))
        .with_row(Row("Latency"))
        .with_panel(_series("Batch duration percentiles", "s", "Wall time of one batch from decode to durable alerts, before the offset commit.",
                            _quantiles("detector_batch_duration_seconds")))
        .with_panel(_series("Events per batch", "short", "Mean messages per processed batch (at most kafka.poll_max_records).", [
            (f"sum(rate(detector_batch_size_events_sum[{RATE}])) / sum(rate(detector_batch_size_events_count[{RATE}]))", "mean"),
        ]))
        .with_row(Row("Input quality and dependencies"))
        .with_panel(_series("Dead letters by reason", "ops", "Messages refused to the dead-letter topic, by the decoder's reason.", [
            (f"sum by (reason) (rate(detector_events_invalid_total[{RATE}]))", "{{reason}}"),
        ]))
        .with_panel(_series("Dependency errors", "ops", "Failed attempts to reach Redis or Kafka; each batch is retried with backoff.", [
            (f"sum by (dependency) (rate(detector_dependency_errors_total[{RATE}]))", "{{dependency}}"),
        ]))
        .with_row(Row("Alerts and campaigns"))
        .with_panel(_series("Alerts by type and severity", "short", "Alerts published per hour, by type and severity.", [
            (f"sum by (type, severity) (rate(detector_alerts_total[{RATE}])) * 3600", "{{type}} {{severity}}"),
        ]))
        .with_panel(_stat("Active campaigns", "Campaigns with a campaign alert within pager.quiet_after_s, by highest severity (from detector pager).", [
            ("max by (severity) (detector_pager_active_campaigns)", "{{severity}}"),
        ]))
        .with_panel(_stat("Open pages", "Critical campaign pages firing in Alertmanager (from detector pager).", [
            ("max(detector_pager_open_pages)", "open"),
        ]))
        .with_row(Row("Redis"))
        .with_panel(_series("Redis round trip by operation", "s", "Time a batch waited on each pipelined round trip (load, campaigns, write); work done meanwhile is not counted.",
                            _quantiles("detector_redis_roundtrip_seconds", "op")))
        .with_panel(_series("Redis memory", "bytes", f"Used memory and the maxmemory limit (0: none). {NEEDS_EXPORTER}", [
            ("sum(redis_memory_used_bytes)", "used"),
            ("sum(redis_memory_max_bytes)", "maxmemory"),
        ], width=6))
        .with_panel(_series("Redis keys and commands", "short", f"Keys held and commands per second. {NEEDS_EXPORTER}", [
            ("sum(redis_db_keys)", "keys"),
            (f"sum(rate(redis_commands_processed_total[{RATE}]))", "commands/s"),
        ], width=6))
        .with_row(Row("Ingestion (tap) and paging"))
        .with_panel(_series("Tap events", "ops", "Events accepted by detector tap, acknowledged by Kafka, dropped unacknowledged, and refused by reason.", [
            (f"sum(rate(detector_tap_events_accepted_total[{RATE}]))", "accepted"),
            (f"sum(rate(detector_tap_events_delivered_total[{RATE}]))", "delivered"),
            (f"sum(rate(detector_tap_events_failed_total[{RATE}]))", "failed"),
            (f"sum by (reason) (rate(detector_tap_events_refused_total[{RATE}]))", "refused {{reason}}"),
        ], width=9))
        .with_panel(_stat("Tap buffer", "Events accepted and not yet acknowledged by Kafka (bounded by tap.buffer_max_events).", [
            ("sum(detector_tap_buffer_events)", "events"),
        ], width=3))
        .with_panel(_series("Pages posted", "ops", "Alerts detector pager posted to Alertmanager, firing or resolved; failed posts.", [
            (f"sum by (state) (rate(detector_pager_pages_posted_total[{RATE}]))", "{{state}}"),
            (f"sum(rate(detector_pager_post_errors_total[{RATE}]))", "post errors"),
        ]))
    )  # fmt: skip
    return json.loads(JSONEncoder(sort_keys=True).encode(board.build()))


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def dashboard_queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard, in panel order.

    >>> len(dashboard_queries(build_dashboard())) > 10
    True
    """
    return [
        target["expr"]
        for panel in model["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the Grafana dashboard JSON")
    parser.add_argument("--out", type=Path, default=DASHBOARD_PATH)
    args = parser.parse_args(argv)
    args.out.write_text(render(build_dashboard()), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
