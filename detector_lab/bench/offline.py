"""``detector replay`` on the bench's events, and the naive baseline: the same pipeline with
one event per batch, so each event pays its own Redis round trips (state and campaign
link) and its own alert flush. The difference is what batching buys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from detector.app import replay
from detector.config import Settings
from detector_lab.bench.stats import ratio

ROUNDTRIP_OPS = ("load", "link", "save")
NAIVE_BATCH = 1

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class OfflineRun:
    events: int
    seconds: float
    batch_size: int
    batches: float
    alerts: int
    roundtrips: dict[str, float]

    @property
    def events_per_s(self) -> float:
        return ratio(self.events, self.seconds)


def run_replay(
    settings: Settings,
    events: Path,
    redis_url: str,
    out_dir: Path,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> OfflineRun:
    """``detector.app.replay`` over ``events`` on the given Redis (under its own key prefix)."""
    if batch_size is not None:
        settings = settings.with_overrides(kafka={"poll_max_records": batch_size})
    registry = CollectorRegistry()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = replay(
        settings,
        events,
        out_dir / f"alerts-batch{settings.kafka.poll_max_records}.jsonl",
        redis_url=redis_url,
        progress=progress,
        registry=registry,
    )

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    return OfflineRun(
        events=report.events,
        seconds=report.seconds,
        batch_size=settings.kafka.poll_max_records,
        batches=sample("detector_batch_size_events_count"),
        alerts=report.alerts,
        roundtrips={
            op: sample("detector_redis_roundtrip_seconds_count", op=op) for op in ROUNDTRIP_OPS
        },
    )


def head(events: Path, n: int, out: Path) -> Path:
    """The first ``n`` lines of an events file (in event time already), for the naive run."""
    with events.open("rb") as src, out.open("wb") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return out
