"""`detector bench` at a small size against the session's broker and Redis: it runs every
measurement and its figures are positive and agree with each other (no timing thresholds)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
import redis

from detector.config import Settings
from detector_lab.bench.report import LATENCY_SCHEMA, latency_markdown, markdown, to_json
from detector_lab.bench.run import BenchOptions, run_bench, uses_external

pytestmark = pytest.mark.integration

EVENTS = 3000
NAIVE = 300


@pytest.fixture
def settings(redis_url: str, kafka_bootstrap: str, unique: str) -> Settings:
    return Settings().with_overrides(
        kafka={"bootstrap_servers": kafka_bootstrap},
        redis={"url": redis_url, "key_prefix": f"t{unique}:"},
    )


def _options(settings: Settings, work_dir: Path, **given: object) -> BenchOptions:
    """Small bench options on the session's broker and Redis."""
    external_kafka, external_redis = uses_external(settings)
    return BenchOptions(
        events=EVENTS,
        latency_seconds=2.0,
        work_dir=work_dir,
        embedded_kafka=not external_kafka,
        embedded_redis=not external_redis,
        **given,  # type: ignore[arg-type]
    )


def test_bench_small(settings: Settings, redis_url: str, unique: str, tmp_path: Path) -> None:
    options = _options(
        settings, tmp_path, workers=2, partitions=4, naive_events=NAIVE, account_sample=50
    )
    stages: set[str] = set()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    result = orjson.loads(
        to_json(run_bench(settings, options, lambda stage, *_: stages.add(stage)))
    )
    assert {"produce", "ceiling", "1 worker", "2 workers", "latency", "replay", "naive"} <= stages
    assert "machine scaling" in stages
    machine = result["machine_scaling"]
    assert machine["processes"] == 2 and machine["speedup"]["n"] == len(machine["trials"]) > 0
    assert all(s > 0 for s in machine["trials"]) and machine["loop_s"] > 0
    assert result["detector"][1]["share_of_machine_speedup"] > 0

    assert result["events"]["count"] == EVENTS
    # One ceiling measurement before each detector run (1 and 2 workers, one repeat each).
    assert [r["events"] for r in result["ceiling"]["runs"]] == [EVENTS, EVENTS]
    assert result["ceiling"]["events_per_s"]["median"] > 0

    assert [d["workers"] for d in result["detector"]] == [1, 2]
    for deployment in result["detector"]:
        assert deployment["events_per_s"]["median"] > 0
        for run in deployment["runs"]:
            assert run["events"] == EVENTS
            assert 0 < run["measured_events"] <= EVENTS
            assert sum(run["consumed_per_worker"]) >= EVENTS  # redelivery can only add
            # Every event applied at least once. A batch caught in a rebalance can be applied
            # by both owners (Redis keeps one: the other's write is refused), so the metric
            # may count it twice, never more often than it was consumed.
            assert EVENTS <= run["applied"] <= sum(run["consumed_per_worker"])
            assert run["join_s"] > 0 and run["seconds"] > 0
            assert all(mib > 0 for worker in run["rss_mib"] for mib in worker)
            cost = run["redis"]
            assert cost["roundtrips_per_batch_by_op"]["load"] == 1.0
            assert 0 < cost["roundtrips_per_batch"] <= 3.0
            assert cost["commands_per_event"] > cost["scripts_per_event"] > 0

    lat = result["latency"]
    assert lat["offered_per_s"] == pytest.approx(lat["max_events_per_s"] / 2)
    assert lat["events"] > 0 and lat["achieved_per_s"] > 0
    assert lat["busy_share"] > 0 and lat["mean_batch_events"] >= 1
    assert lat["bench_cpu_share"] > 0
    assert (
        0
        <= lat["generator_lag_p50_ms"]
        <= lat["generator_lag_p99_ms"]
        <= lat["generator_lag_max_ms"]
    )
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    own = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1
    assert lat["cpu_placement"].startswith("each worker" if own else "shared")
    if own:  # the bench gave its CPUs back after the paced phase
        assert os.sched_getaffinity(0) == affinity

    mem = result["memory"]
    assert 0 < mem["accounts_sampled"] <= mem["accounts"] <= result["events"]["accounts"]
    per_account = mem["bytes_per_account"]
    assert 0 < per_account["median"] <= per_account["p90"] <= per_account["max"]
    for by_key in mem["bytes_per_account_by_key"].values():
        assert by_key["median"] <= per_account["max"]
    assert (mem["index_bytes"] > 0) == (mem["index_entries"] > 0)

    assert result["replay"]["runs"][0]["events"] == EVENTS
    naive = result["naive"]
    assert naive["one_event_per_batch"]["events"] == NAIVE
    assert naive["one_event_per_batch"]["roundtrips_per_event"] > 1
    assert naive["batched_same_events"]["roundtrips_per_event"] < 0.1
    assert naive["batching_speedup"] > 0

    assert "kafka-python ceiling" in markdown(result)
    client = redis.Redis.from_url(redis_url)
    try:  # every run cleared its keys
        assert not list(client.scan_iter(match=f"t{unique}:bench:*", count=1000))
    finally:
        client.close()


def test_latency_alone_at_a_fixed_rate(settings: Settings, tmp_path: Path) -> None:
    options = _options(settings, tmp_path, latency_rate=300.0, latency_own_cpus=False)
    stages: set[str] = set()
    result = orjson.loads(
        to_json(run_bench(settings, options, lambda stage, *_: stages.add(stage)))
    )
    assert stages == {"simulate", "latency"}  # nothing else is measured
    assert result["schema"] == LATENCY_SCHEMA and "ceiling" not in result
    lat = result["latency"]
    assert lat["offered_per_s"] == 300.0 and lat["max_events_per_s"] is None
    assert lat["events"] == 600 and lat["achieved_per_s"] > 0
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["cpu_placement"].startswith("shared")  # as asked
    assert "(a fixed rate)" in latency_markdown(result)
