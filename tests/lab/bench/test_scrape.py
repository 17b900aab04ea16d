from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from detector.metrics import Metrics
from detector_lab.bench.scrape import parse


def test_reads_the_workers_own_metrics() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.events_consumed.inc(1200)
    m.redis_seconds.labels("load").observe(0.002)
    m.redis_seconds.labels("load").observe(0.004)
    m.redis_seconds.labels("save").observe(0.001)
    m.batch_size.observe(1000)
    m.batch_size.observe(200)
    scrape = parse(generate_latest(registry).decode())
    assert scrape.total("detector_events_consumed_total") == 1200
    assert scrape.by_label("detector_redis_roundtrip_seconds_count", "op") == {
        "load": 2.0,
        "save": 1.0,
    }
    assert scrape.total("detector_batch_size_events_sum") == 1200
    assert scrape.total("detector_batch_size_events_count") == 2
