"""Detector throughput end to end: a deployment of workers drains the topic; events/s are
committed events over the time between every worker consuming and the last commit.

The bench samples every ``SAMPLE_EVERY_S`` the group's committed offsets (OffsetFetch,
without joining the group) and each worker's RSS (from the OS); it reads the workers'
``/metrics`` only until every worker has consumed, and once at the end, because a scrape
costs the worker CPU (10 scrapes/s took ~9% of a worker's main-thread time in a profile). Group-join time is
left out fairly: the measured window starts at the first sample in which *every* worker
has processed a batch (so a late joiner's rebalance is behind us) and ends at the first
sample in which the committed offsets reach the end of every partition. Events counted
are those committed inside the window: this may include up to one batch per worker that
was processed just before the window opened (about 1% at 100,000 events and batches of
1,000). Sampling bounds the timing error at two intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from detector.errors import BenchError
from detector_lab.bench.redis_probe import RedisProbe, command_delta
from detector_lab.bench.scrape import Scrape
from detector_lab.bench.stats import ratio
from detector_lab.bench.topic import CommittedOffsets
from detector_lab.bench.workers import Deployment

SAMPLE_EVERY_S = 0.1
STALL_TIMEOUT_S = 90.0  # no commit progress for this long (once consuming) is a failure
JOIN_TIMEOUT_S = 90.0
RSS_POINTS = 10
MIN_EVENTS_PER_S = 100  # slower than this is a failure, not a measurement

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the workers were started
    committed: int  # events committed by the group
    consumed: tuple[float, ...]  # per worker, from its metrics (0 before it answers)
    rss: tuple[int, ...]  # per worker, bytes


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    committed_at_start: int

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def measured_window(samples: Sequence[Sample], total: int) -> Window | None:
    """From every worker consuming to everything committed; None until both happened.

    >>> s = [Sample(0.0, 0, (0, 0), ()), Sample(1.0, 10, (20, 0), ()),
    ...      Sample(2.0, 30, (40, 5), ()), Sample(6.0, 100, (90, 10), ())]
    >>> measured_window(s, 100)
    Window(start_s=2.0, end_s=6.0, committed_at_start=30)
    >>> measured_window(s[:3], 100) is None
    True

    A tiny topic can be all committed by the first sample that shows every worker consuming:
    the window then starts at the sample before (a lower bound, never an empty window).

    >>> measured_window([Sample(0.0, 0, (5, 0), ()), Sample(0.1, 100, (90, 10), ())], 100)
    Window(start_s=0.0, end_s=0.1, committed_at_start=0)
    """
    start = next((s for s in samples if s.consumed and all(c > 0 for c in s.consumed)), None)
    end = next((s for s in samples if s.committed >= total), None)
    if start is None or end is None:
        return None
    if start.t >= end.t:
        before = [s for s in samples if s.t < end.t]
        if not before:
            return None
        start = before[-1]
    return Window(start.t, end.t, start.committed)


def rss_trace(samples: Sequence[Sample], total: int, points: int = RSS_POINTS) -> list[list[float]]:
    """Each worker's RSS (MiB) at every 1/points of the committed events: flat or growing.

    >>> s = [Sample(0, 0, (1,), (100 << 20,)), Sample(1, 50, (1,), (110 << 20,)),
    ...      Sample(2, 100, (1,), (120 << 20,))]
    >>> rss_trace(s, 100, points=2)
    [[110.0, 120.0]]
    """
    workers = len(samples[-1].rss) if samples else 0
    out: list[list[float]] = [[] for _ in range(workers)]
    for k in range(1, points + 1):
        target = total * k / points
        sample = next((s for s in samples if s.committed >= target), samples[-1])
        for w in range(workers):
            out[w].append(round(sample.rss[w] / 2**20, 1))
    return out


@dataclass(frozen=True)
class DetectorRun:
    workers: int
    events: int
    measured_events: int
    seconds: float
    join_s: float
    wall_s: float
    consumed_per_worker: list[float]
    applied: float
    duplicates: float
    invalid: float
    alerts: float
    batches: float
    batch_seconds: float
    roundtrips: dict[str, float]  # per op, all workers
    redis_seconds: dict[str, float]  # time in those round trips, per op
    redis_commands: dict[str, int]  # INFO commandstats delta over the run
    rss_mib: list[list[float]]  # per worker, at each tenth of the run
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return ratio(self.measured_events, self.seconds)


def _totals(scrapes: list[Scrape | None], name: str) -> float:
    return sum(s.total(name) for s in scrapes if s is not None)


def _per_op(scrapes: list[Scrape | None], name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in scrapes:
        if s is not None:
            for op, v in s.by_label(name, "op").items():
                out[op] = out.get(op, 0.0) + v
    return out


def run_deployment(
    deployment: Deployment,
    offsets: CommittedOffsets,
    ends: dict[int, int],
    probe: RedisProbe,
    progress: Progress | None = None,
    timeout_s: float | None = None,
) -> DetectorRun:
    """Start the workers, wait until the group has committed the whole topic, stop them.

    Without ``timeout_s``, a run may take as long as ``MIN_EVENTS_PER_S`` allows; a stall
    (no commit for ``STALL_TIMEOUT_S``) ends it sooner.
    """
    total = sum(ends.values())
    timeout_s = timeout_s or max(600.0, total / MIN_EVENTS_PER_S)
    group = deployment.settings.kafka.group_id
    commands_before = probe.command_calls()
    samples: list[Sample] = []
    started = time.monotonic()
    with deployment:
        last_progress_s, last_committed = 0.0, -1
        consumed: tuple[float, ...] = (0.0,) * deployment.count
        while True:
            deployment.check_alive()
            now = time.monotonic() - started
            committed = sum(min(v, ends.get(p, 0)) for p, v in offsets.read(group).items())
            if not all(consumed):
                # Scraped only until every worker consumed: a scrape costs the worker CPU.
                consumed = tuple(
                    s.total("detector_events_consumed_total") if s else 0.0
                    for s in deployment.scrape()
                )
            samples.append(Sample(now, committed, consumed, tuple(deployment.rss_bytes())))
            if progress:
                progress(committed, total)
            if committed >= total:
                break
            if committed != last_committed:
                last_progress_s, last_committed = now, committed
            _check_progress(now, last_progress_s, committed, total, consumed, timeout_s)
            time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - started - now)))
        final = deployment.scrape()
    commands = command_delta(commands_before, probe.command_calls())
    window = measured_window(samples, total)
    if window is None:
        raise BenchError(f"no measurement window for {deployment.count} workers (group {group})")
    first_all = next(s.t for s in samples if s.consumed and all(c > 0 for c in s.consumed))
    return DetectorRun(
        workers=deployment.count,
        events=total,
        measured_events=total - window.committed_at_start,
        seconds=window.seconds,
        join_s=first_all,
        wall_s=samples[-1].t,
        consumed_per_worker=[
            s.total("detector_events_consumed_total") if s else 0.0 for s in final
        ],
        applied=_totals(final, "detector_events_applied_total"),
        duplicates=_totals(final, "detector_events_duplicate_total"),
        invalid=_totals(final, "detector_events_invalid_total"),
        alerts=_totals(final, "detector_alerts_total"),
        batches=_totals(final, "detector_batch_size_events_count"),
        batch_seconds=_totals(final, "detector_batch_duration_seconds_sum"),
        roundtrips=_per_op(final, "detector_redis_roundtrip_seconds_count"),
        redis_seconds=_per_op(final, "detector_redis_roundtrip_seconds_sum"),
        redis_commands=commands,
        rss_mib=rss_trace(samples, total),
    )


def _check_progress(
    now: float,
    last_progress_s: float,
    committed: int,
    total: int,
    consumed: tuple[float, ...],
    timeout_s: float,
) -> None:
    if not any(consumed) and now > JOIN_TIMEOUT_S:
        raise BenchError(
            f"workers consumed nothing in {JOIN_TIMEOUT_S:.0f} s: is the broker reachable "
            "(kafka.bootstrap_servers / KAFKA_BOOTSTRAP_SERVERS)? See the worker logs."
        )
    if any(consumed) and now - last_progress_s > STALL_TIMEOUT_S:
        raise BenchError(
            f"no offsets committed for {STALL_TIMEOUT_S:.0f} s at {committed} of {total}"
        )
    if now > timeout_s:
        raise BenchError(f"committed {committed} of {total} events in {timeout_s:.0f} s")
