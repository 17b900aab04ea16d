"""Prometheus metrics, registered on an injected registry (tests build a fresh one).

No metric carries an account id: accounts appear in alerts only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detector.decode import REASONS

_BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REDIS_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "detector_events_consumed",
            "Messages read from the input topic or file.",
            registry=registry,
        )
        self.events_applied = Counter(
            "detector_events_applied", "Valid events applied to account state.", registry=registry
        )
        self.events_duplicate = Counter(
            "detector_events_duplicate",
            "Valid events skipped because they were already counted (redelivery or producer duplicate).",
            registry=registry,
        )
        self.events_late = Counter(
            "detector_events_late",
            "Events older than the allowed lateness: counted in totals, not in windows.",
            registry=registry,
        )
        self.events_invalid = Counter(
            "detector_events_invalid",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.events_invalid.labels(reason)
        self.batch_failures = Counter(
            "detector_batch_failures",
            "Unexpected exceptions while processing a batch or a part of one, by class: each "
            "part is tried twice, then split until the records that fail are dead-lettered "
            "(reason processing_error). Outages of Redis or Kafka are not counted here.",
            ["error"],
            registry=registry,
        )
        self.alerts = Counter(
            "detector_alerts",
            "Alerts published, by type and severity.",
            ["type", "severity"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "detector_batch_duration_seconds",
            "Wall time to process one batch, from decode to durable alerts (before the offset commit).",
            buckets=_BATCH_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "detector_batch_size_events",
            "Messages per processed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.redis_seconds = Histogram(
            "detector_redis_roundtrip_seconds",
            "Time a batch spent on one pipelined Redis round trip, by operation: sending it and "
            "waiting for the replies (the work done while Redis works is not counted).",
            ["op"],
            buckets=_REDIS_BUCKETS_S,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "detector_consumer_lag_messages",
            "Messages between the consumer position and the partition's high watermark.",
            ["topic", "partition"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "detector_assigned_partitions",
            "Input partitions the group has given this worker; 0 means it is idle (more workers "
            "than partitions) or between assignments.",
            registry=registry,
        )
        self.state_conflicts = Counter(
            "detector_state_conflicts",
            "Account writes refused because another worker changed the account meanwhile.",
            registry=registry,
        )
        self.dependency_errors = Counter(
            "detector_dependency_errors",
            "Failed attempts to reach a dependency; the batch is retried with backoff.",
            ["dependency"],
            registry=registry,
        )
        for dependency in ("redis", "kafka"):  # zero from the start, so rate() and panels work
            self.dependency_errors.labels(dependency)
        self.anomaly_score = Histogram(
            "detector_anomaly_score",
            "Scores of the river anomaly model, per scored event.",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
            registry=registry,
        )
        self.ready = Gauge(
            "detector_ready",
            "1 when the worker is consuming and its dependencies answer.",
            registry=registry,
        )
