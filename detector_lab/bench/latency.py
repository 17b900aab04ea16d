"""End-to-end latency at a fixed offered load: from an event's production to the commit of
the batch that carried it.

Method. The bench produces events at a fixed rate (a paced producer that sends what is due
every ``PACE_TICK_S``, like a gateway batching) and notes, per event, the monotonic time at
which it was handed to the producer (its production) and, from the acknowledgement, the
partition and offset the event got. Meanwhile a thread reads the group's committed offsets
every ``POLL_EVERY_S`` (OffsetFetch, without joining the group). An event at offset ``o`` of
partition ``p`` is committed at the first read that shows ``committed[p] > o``; its latency
is the time that read returned minus its production. The read can only be later than the
real commit, never earlier, so the figures are upper bounds, by at most one read interval
(reported as ``resolution_ms``). Sender and reader are one process and one clock, so no
clock skew enters.

How far the generator itself fell behind (production minus the time the event was due: the
wait for its tick, and for a CPU the workers use, which a fleet with CPUs of its own does
not wait for) is reported apart, as ``generator_lag_*``.

The paced phase runs with this process's heap frozen (``settle_heap``): it holds every event
and, by the end, a future per sent one, and a full collection walking them (~300 ms on the
2-core machine) stalled the generator and the offset reader at once, which added up to that
much to the events committed meanwhile.

The workers join first (a warm-up trickle until every worker has processed a batch and
the warm-up is committed), so no event waits for a group join.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from detector.app import settle_heap
from detector.errors import BenchError
from detector.io.kafka import make_producer
from detector_lab.bench.cpus import placed
from detector_lab.bench.stats import percentile, ratio
from detector_lab.bench.topic import CommittedOffsets, Sent, produce_paced
from detector_lab.bench.workers import Deployment

POLL_EVERY_S = 0.010  # an OffsetFetch costs ~0.5 ms of CPU here and some of the broker's
# The paced producer stands for the inference fleet, which has CPUs of its own: on the bench
# machine its thread runs at this lower priority, so it takes what the workers and servers
# leave rather than competing with them. How late it sends is reported (``generator_lag_*``).
GENERATOR_NICE = 10  # added to the bench's own nice value
WARMUP_EVERY_S = 0.02
WARMUP_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 120.0

Progress = Callable[[int, int], None]
T = TypeVar("T")
Reading = tuple[
    float, dict[int, int]
]  # (monotonic time the read returned, committed per partition)


def commit_times(sent: Sequence[Sent], readings: Sequence[Reading]) -> list[float | None]:
    """When each sent event was first seen committed (None: never in these readings).

    >>> reads = [(1.0, {0: 0}), (2.0, {0: 2}), (3.0, {0: 3, 1: 1})]
    >>> sent = [Sent(0, 0, 0.5, 0.5), Sent(0, 2, 0.6, 0.6), Sent(1, 0, 0.7, 0.7), Sent(1, 5, 0.8, 0.8)]
    >>> commit_times(sent, reads)
    [2.0, 3.0, 3.0, None]
    """
    times: dict[int, list[float]] = {}
    marks: dict[int, list[int]] = {}
    for t, committed in readings:
        for p, offset in committed.items():
            seen = marks.setdefault(p, [])
            times.setdefault(p, []).append(t)
            seen.append(max(offset, seen[-1]) if seen else offset)  # a re-commit never goes back
    out: list[float | None] = []
    for s in sent:
        seen = marks.get(s.partition, [])
        i = bisect.bisect_right(seen, s.offset)  # first reading with committed > offset
        out.append(times[s.partition][i] if i < len(seen) else None)
    return out


@dataclass(frozen=True)
class LatencyRun:
    workers: int
    offered_per_s: float
    achieved_per_s: float
    events: int
    warmup_events: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    resolution_ms: float
    mean_batch_events: float
    busy_share: float  # of the paced phase spent processing batches: near 1 means saturated
    # CPU of this process (paced producer and offset reader) over the paced phase, in cores:
    # on a small machine it is taken from the workers and the servers.
    bench_cpu_share: float
    # How late the generator handed events to the producer (production minus due time).
    generator_lag_p50_ms: float
    generator_lag_p99_ms: float
    generator_lag_max_ms: float
    cpu_placement: str  # detector_lab.bench.cpus.describe


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """Percentiles in milliseconds.

    >>> latency_summary([0.010, 0.020, 0.030, 0.040])["p50_ms"]
    20.0
    """
    ms = [v * 1000 for v in latencies_s]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


class _Reader(threading.Thread):
    def __init__(self, offsets: CommittedOffsets, group: str) -> None:
        super().__init__(name="bench-commit-reader", daemon=True)
        self._offsets, self._group = offsets, group
        self.readings: list[Reading] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            committed = self._offsets.read(self._group)
            self.readings.append((time.monotonic(), committed))
            self.halt.wait(POLL_EVERY_S)

    def latest(self) -> dict[int, int]:
        return self.readings[-1][1] if self.readings else {}


def measure_latency(
    deployment: Deployment,
    offsets: CommittedOffsets,
    events: list[tuple[bytes, bytes]],
    rate_per_s: float,
    seconds: float,
    progress: Progress | None = None,
    own_cpus: bool = True,
) -> LatencyRun:
    """Warm up on the first events, then send the next ``seconds`` worth at ``rate_per_s``,
    with each worker on a CPU of its own if ``own_cpus`` and the machine has enough."""
    settings = deployment.settings.kafka
    reader = _Reader(offsets, settings.group_id)
    with deployment:
        warm = _warm_up(deployment, offsets, events)
        batches_before = _batches(deployment)
        paced = events[warm : warm + max(2, round(rate_per_s * seconds))]
        with placed(deployment.pids, own_cpus) as placement, _settled_heap():
            paced_from, cpu_from = time.monotonic(), time.process_time()
            reader.start()
            try:
                sent = _yielding(
                    produce_paced, settings, settings.input_topic, paced, rate_per_s, progress
                )
                paced_s = time.monotonic() - paced_from
                bench_cpu_s = time.process_time() - cpu_from
                _wait_committed(deployment, reader, sent)
            finally:
                reader.halt.set()
                reader.join()
        batches = [a - b for a, b in zip(_batches(deployment), batches_before, strict=True)]
    done = commit_times(sent, reader.readings)
    latencies = [c - s.sent_s for c, s in zip(done, sent, strict=True) if c is not None]
    gaps = [b[0] - a[0] for a, b in zip(reader.readings, reader.readings[1:], strict=False)]
    span = sent[-1].sent_s - sent[0].sent_s if len(sent) > 1 else 0.0
    lag = latency_summary([s.sent_s - s.due_s for s in sent])
    return LatencyRun(
        workers=deployment.count,
        offered_per_s=rate_per_s,
        achieved_per_s=ratio(len(sent) - 1, span),
        events=len(latencies),
        warmup_events=warm,
        resolution_ms=statistics.median(gaps) * 1000 if gaps else 0.0,
        mean_batch_events=ratio(batches[1], batches[0]),
        busy_share=ratio(batches[2], paced_s * deployment.count),
        bench_cpu_share=ratio(bench_cpu_s, paced_s),
        generator_lag_p50_ms=lag["p50_ms"],
        generator_lag_p99_ms=lag["p99_ms"],
        generator_lag_max_ms=lag["max_ms"],
        cpu_placement=placement,
        **latency_summary(latencies),
    )


@contextlib.contextmanager
def _settled_heap() -> Iterator[None]:
    """The collector kept off what this process holds so far (see the module's docstring),
    and as it was afterwards."""
    threshold = gc.get_threshold()
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _yielding(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in a thread of ``GENERATOR_NICE`` (Linux sets priority per thread, and
    the threads it starts, such as the producer's, inherit it); elsewhere as it is."""
    if sys.platform != "linux":
        return work(*args)
    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        os.nice(GENERATOR_NICE)  # relative, and of this thread only
        try:
            done.append(work(*args))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="bench-paced-producer")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return done[0]


def _batches(deployment: Deployment) -> list[float]:
    """(batches, events in them, seconds spent on them) over all workers."""
    scrapes = [s for s in deployment.scrape() if s is not None]
    return [
        sum(s.total(name) for s in scrapes)
        for name in (
            "detector_batch_size_events_count",
            "detector_batch_size_events_sum",
            "detector_batch_duration_seconds_sum",
        )
    ]


def _warm_up(
    deployment: Deployment, offsets: CommittedOffsets, events: list[tuple[bytes, bytes]]
) -> int:
    """Trickle events until every worker has processed one and all of them are committed."""
    settings = deployment.settings.kafka
    producer = make_producer(settings, linger_ms=0)
    ends: dict[int, int] = {}
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    n = 0
    try:
        while True:
            deployment.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"latency warm-up: not every worker consumed within {WARMUP_TIMEOUT_S:.0f} s"
                )
            scrapes = deployment.scrape()
            if all(s and s.total("detector_events_consumed_total") > 0 for s in scrapes):
                break
            if n < len(events) // 10:  # never spend more than a tenth of the events on it
                key, value = events[n]
                md = producer.send(settings.input_topic, key=key, value=value).get(timeout=10)
                ends[md.partition] = md.offset + 1
                n += 1
            time.sleep(WARMUP_EVERY_S)
    finally:
        producer.close()
    while not _reached(offsets.read(settings.group_id), ends):
        deployment.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("latency warm-up: its events were not committed in time")
        time.sleep(WARMUP_EVERY_S)
    return n


def _reached(committed: dict[int, int], ends: dict[int, int]) -> bool:
    return all(committed.get(p, 0) >= end for p, end in ends.items())


def _wait_committed(deployment: Deployment, reader: _Reader, sent: Sequence[Sent]) -> None:
    ends: dict[int, int] = {}
    for s in sent:
        ends[s.partition] = max(ends.get(s.partition, 0), s.offset + 1)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        if _reached(reader.latest(), ends):
            return
        deployment.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(
                f"latency: events still uncommitted {DRAIN_TIMEOUT_S:.0f} s after the last send; "
                "the offered load is above what the workers sustain"
            )
        time.sleep(0.05)
