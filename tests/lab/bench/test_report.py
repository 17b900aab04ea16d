from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson

from detector_lab.bench.events import BenchEvents
from detector_lab.bench.offline import OfflineRun
from detector_lab.bench.parallel import ParallelRun
from detector_lab.bench.report import (
    LATENCY_SCHEMA,
    build,
    build_latency,
    latency_markdown,
    markdown,
    redis_cost,
    scaling_line,
    to_json,
)
from detector_lab.bench.run import BenchOptions
from detector_lab.bench.throughput import DetectorRun
from detector_lab.bench.topic import CeilingRun


def _detector(workers: int, seconds: float) -> DetectorRun:
    return DetectorRun(
        workers=workers,
        events=10_000,
        measured_events=8_000,
        seconds=seconds,
        join_s=3.0,
        wall_s=3.0 + seconds,
        consumed_per_worker=[10_000 / workers] * workers,
        applied=10_000,
        duplicates=0,
        invalid=0,
        alerts=12,
        batches=10,
        batch_seconds=seconds,
        roundtrips={"load": 10, "link": 10, "save": 10},
        redis_seconds={"load": 0.2, "link": 0.1, "save": 0.1},
        redis_commands={"evalsha": 2_000, "pfadd": 30_000, "info": 2},
        rss_mib=[[150.0] * 10] * workers,
    )


MACHINE = ParallelRun(2, 1000, 0.4, [1.6, 2.0, 1.8])


def _result(parallel: ParallelRun | None = MACHINE, two: DetectorRun | None = None) -> dict:
    events = BenchEvents(Path("e.jsonl"), 10_000, 100, 800.0, 24.0, "default", 42, 0.02)
    return build(
        started="2026-01-01T00:00:00+00:00",
        options=BenchOptions(events=10_000),
        machine={
            "cpu": "CPU",
            "cores": 2,
            "physical_cores": 2,
            "ram_gib": 8.0,
            "os": "Linux",
            "python": "CPython 3.11",
            "redis": "7.2",
            "broker": "tansu",
            "kafka_python": "3",
            "redis_py": "8",
            "river": "0.26",
        },
        load={"before": [0.5, 0.5, 0.5], "after": [1.0, 0.8, 0.6]},
        events=events,
        ceiling=[CeilingRun(10_000, 9_000, 0.3)],
        detector={1: [_detector(1, 4.0)], 2: [two or _detector(2, 2.5)]},
        latency={
            "max_events_per_s": 2000.0,
            "workers": 1,
            "offered_per_s": 1000.0,
            "achieved_per_s": 999.0,
            "events": 5000,
            "warmup_events": 50,
            "p50_ms": 40.0,
            "p90_ms": 80.0,
            "p99_ms": 120.0,
            "max_ms": 200.0,
            "mean_ms": 50.0,
            "resolution_ms": 6.0,
            "busy_share": 0.5,
            "bench_cpu_share": 0.4,
            "generator_lag_p50_ms": 3.0,
            "generator_lag_p99_ms": 30.0,
            "generator_lag_max_ms": 60.0,
            "mean_batch_events": 40.0,
            "cpu_placement": "each worker on a CPU of its own (CPU 1); the bench and the "
            "servers it started on CPU 0",
        },
        memory={
            "accounts": 100,
            "accounts_sampled": 100,
            "bytes_per_account": {"median": 1500, "p90": 1800, "max": 3000, "mean": 1550.0},
            "bytes_per_account_by_key": {
                "value": {"median": 1100, "p90": 1300, "max": 1400, "mean": 1150.0},
                ":ip": {"median": 400, "p90": 500, "max": 1600, "mean": 400.0},
            },
            "index_entries": 200,
            "index_bytes": 30_000,
            "bytes_per_index_entry": 150.0,
            "campaign_bytes": 50_000,
            "campaign_keys": {},
            "model_checkpoint_bytes": 0,
        },
        replays=[OfflineRun(10_000, 2.0, 1000, 10, 12, {"load": 10, "link": 10, "save": 10})],
        naive={
            "one_event_per_batch": OfflineRun(
                1000, 2.0, 1, 1000, 1, {"load": 1000, "link": 1000, "save": 1000}
            ),
            "batched_same_events": OfflineRun(
                1000, 0.25, 1000, 1, 1, {"load": 1, "link": 1, "save": 1}
            ),
        },
        parallel=parallel,
    )


def test_result_figures_are_consistent() -> None:
    result = _result()
    one, two = result["detector"]
    assert one["events_per_s"]["median"] == 2000.0
    assert two["speedup_vs_1_worker"] == 1.6
    assert result["machine_scaling"]["speedup"] == {"median": 1.8, "min": 1.6, "max": 2.0, "n": 3}
    assert two["share_of_machine_speedup"] == round(1.6 / 1.8, 3)
    assert one["share_of_machine_speedup"] is None
    assert one["share_of_ceiling"] == round(2000 / 30_000, 3)
    assert result["naive"]["batching_speedup"] == 8.0
    assert result["naive"]["one_event_per_batch"]["roundtrips_per_event"] == 3.0


def test_redis_cost_leaves_out_the_bench_probes() -> None:
    cost = redis_cost(_detector(1, 4.0))
    assert cost["commands_per_event"] == 3.2  # (2,000 + 30,000) / 10,000, without INFO
    assert cost["roundtrips_per_batch"] == 3.0
    assert cost["roundtrips_per_batch_by_op"] == {"link": 1.0, "load": 1.0, "save": 1.0}
    assert cost["events_per_batch"] == 1000.0


def test_json_and_markdown_render() -> None:
    result = _result()
    assert orjson.loads(to_json(result))["schema"] == "detector_lab.bench.v1"
    page = markdown(result)
    assert "| detector, 2 workers (end to end) | 3,200 | 11% |" in page
    assert "| 40 ms | 80 ms | 120 ms | 200 ms | 50 ms | 6.0 ms |" in page
    assert "3 ms after they were due at p50, 30 ms at p99 and 60 ms at most" in page
    assert "CPUs: each worker on a CPU of its own (CPU 1); the bench" in page
    assert "**150.0 B per entry**" in page
    assert scaling_line(result) in page
    assert "1 -> 2 workers: 1.60x. This machine runs 2 CPU-bound Python processes at 1.80x" in page
    assert "(median of 3 trials, 1.60–2.00x): the workers scale 89% as well" in page


def test_the_busiest_workers_share_of_the_topic_is_reported() -> None:
    result = _result()
    assert result["detector"][1]["busiest_worker_share"] == 0.5
    assert "gave the busiest worker 50.0% of the events (50% is an even split)" in markdown(result)
    uneven = dataclasses.replace(_detector(2, 2.5), consumed_per_worker=[4_428.0, 5_572.0])
    assert _result(two=uneven)["detector"][1]["busiest_worker_share"] == 0.557
    assert result["detector"][0]["busiest_worker_share"] == 1.0


def test_without_a_machine_measurement_there_is_no_scaling_line() -> None:
    result = {**_result(), "machine_scaling": None}
    assert scaling_line(result) == ""
    assert "This machine runs" not in markdown(result)
    assert "machine scaling" in _result()["method"]


def test_a_measurement_without_trials_is_no_measurement() -> None:
    result = _result(parallel=ParallelRun(2, 1000, 0.4, []))
    assert result["machine_scaling"] is None
    assert result["detector"][1]["share_of_machine_speedup"] is None
    assert "machine scaling" not in result["method"]
    assert scaling_line(result) == ""


def test_a_latency_run_alone_renders_without_a_maximum() -> None:
    full = _result()
    alone = build_latency(
        started=full["started_at"],
        options=BenchOptions(events=10_000, latency_rate=300),
        machine=full["machine"],
        load=full["load_average"],
        events=BenchEvents(Path("e.jsonl"), 10_000, 100, 800.0, 24.0, "default", 42, 0.02),
        latency={**full["latency"], "max_events_per_s": None, "offered_per_s": 300.0},
    )
    assert orjson.loads(to_json(alone))["schema"] == LATENCY_SCHEMA
    assert "--latency-rate 300" in alone["command"]
    page = latency_markdown(alone)
    assert "offered 300 events/s (a fixed rate)" in page
    assert "| 40 ms | 80 ms | 120 ms | 200 ms | 50 ms | 6.0 ms |" in page
    assert "## Throughput" not in page
