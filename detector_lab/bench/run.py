"""``detector bench``: every measurement in order, on one set of events, broker and Redis."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import statistics
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detector.app import checkpoint_key
from detector.config import KafkaSettings, RedisSettings, Settings
from detector.embedded import embedded_services
from detector.errors import ConfigError
from detector.io.roundtrip import connect
from detector_lab.bench import report
from detector_lab.bench.events import BenchEvents, prepare_events
from detector_lab.bench.latency import LatencyRun, measure_latency
from detector_lab.bench.machine import describe_machine, embedded_broker_version, load_average
from detector_lab.bench.offline import OfflineRun, head, run_replay
from detector_lab.bench.parallel import ParallelRun, measure_parallel
from detector_lab.bench.redis_probe import INDEX_FAMILIES, RedisProbe
from detector_lab.bench.stats import percentile, ratio
from detector_lab.bench.throughput import DetectorRun, run_deployment
from detector_lab.bench.topic import (
    CeilingRun,
    CommittedOffsets,
    consume_ceiling,
    create_topic,
    delete_topics,
    produce_all,
    read_events,
)
from detector_lab.bench.workers import Deployment

Progress = Callable[[str, int, int], None]  # (stage, done, total); total 0: unknown
CEILING_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BenchOptions:
    events: int = 100_000
    workers: int = 2
    partitions: int = 4
    scenario: str = "default"
    seed: int | None = None
    repeat: int = 1
    latency_seconds: float = 15.0
    latency_workers: int = 1
    latency_load: float = 0.5  # share of the measured maximum offered in the latency run
    latency_rate: float | None = None  # events/s: the latency run alone, at this rate
    latency_own_cpus: bool = True  # each latency worker on a CPU of its own, if there are enough
    naive_events: int = 10_000
    account_sample: int = 500
    work_dir: Path = Path("out/bench")
    embedded_kafka: bool = True
    embedded_redis: bool = True

    @property
    def command(self) -> str:
        """The command line that repeats this run.

        >>> BenchOptions(events=5000).command
        'detector bench --events 5000 --workers 2 --partitions 4 --repeat 1 --latency-seconds 15.0 --naive-events 10000'
        """
        latency = f" --latency-workers {self.latency_workers}" if self.latency_workers != 1 else ""
        if self.latency_load != 0.5:
            latency += f" --latency-load {self.latency_load}"
        if self.latency_rate is not None:
            latency += f" --latency-rate {self.latency_rate:g}"
        if not self.latency_own_cpus:
            latency += " --latency-shared-cpus"
        scenario = f" --scenario {self.scenario}" if self.scenario != "default" else ""
        return (
            f"detector bench --events {self.events} --workers {self.workers} "
            f"--partitions {self.partitions} --repeat {self.repeat} "
            f"--latency-seconds {self.latency_seconds}{latency} --naive-events {self.naive_events}"
            f"{scenario}"
        )

    def check(self) -> None:
        """Refuse options that cannot give a sound measurement; the message names the flag."""
        if self.events < 1000:
            raise ConfigError("--events must be at least 1000")
        if self.workers < 1 or self.repeat < 1:
            raise ConfigError("--workers and --repeat must be at least 1")
        if self.partitions < self.workers:
            raise ConfigError(
                f"--partitions ({self.partitions}) must be at least --workers ({self.workers}): "
                "a worker without a partition idles"
            )
        if self.latency_workers not in (1, self.workers):
            raise ConfigError("--latency-workers must be 1 or --workers")
        if not 0 < self.latency_load <= 1:
            raise ConfigError("--latency-load must be in (0, 1]: a share of the measured maximum")
        if self.latency_rate is not None:
            if self.latency_rate <= 0:
                raise ConfigError("--latency-rate must be positive (events/s)")
            if self.latency_load != 0.5:
                raise ConfigError(
                    "--latency-rate and --latency-load exclude each other: a rate is offered "
                    "as it is, without measuring the maximum"
                )
            if self.latency_rate * self.latency_seconds > 0.9 * self.events:
                raise ConfigError(
                    f"--latency-rate x --latency-seconds needs more than 90% of --events "
                    f"({self.events}); raise --events or shorten --latency-seconds"
                )
        if self.latency_seconds <= 0 or self.naive_events < 100 or self.account_sample < 1:
            raise ConfigError(
                "--latency-seconds must be positive, --naive-events at least 100, "
                "--account-sample at least 1"
            )


def uses_external(settings: Settings) -> tuple[bool, bool]:
    """Whether the settings name a broker / Redis other than the built-in defaults
    (from ``--config``, ``KAFKA_BOOTSTRAP_SERVERS`` or ``REDIS_URL``): then the bench uses them.

    >>> uses_external(Settings().with_overrides(redis={"url": "redis://db:6379/0"}))
    (False, True)
    """
    return (
        settings.kafka.bootstrap_servers != KafkaSettings().bootstrap_servers,
        settings.redis.url != RedisSettings().url,
    )


@dataclass
class _Run:
    """Names of this run's topics, groups and key prefixes, so nothing collides with others."""

    settings: Settings
    options: BenchOptions
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def topic(self) -> str:
        return f"bench.{self.run_id}.queries"

    def prefix(self, tag: str) -> str:
        return f"{self.settings.redis.key_prefix}bench:{self.run_id}:{tag}:"

    def deployment(self, tag: str, topic: str) -> Settings:
        return self.settings.with_overrides(
            kafka={
                "input_topic": topic,
                "alerts_topic": f"bench.{self.run_id}.{tag}.alerts",
                "dlq_topic": f"bench.{self.run_id}.{tag}.dlq",
                "group_id": f"bench-{self.run_id}-{tag}",
                "topic_partitions": self.options.partitions,
                "create_topics": True,
                "auto_offset_reset": "earliest",
            },
            redis={"key_prefix": self.prefix(tag)},
        )

    def topics(self, tags: list[str]) -> list[str]:
        names = [self.topic, f"bench.{self.run_id}.latency.queries"]
        for tag in tags:
            names += [f"bench.{self.run_id}.{tag}.alerts", f"bench.{self.run_id}.{tag}.dlq"]
        return names


@contextlib.contextmanager
def _services(settings: Settings, options: BenchOptions) -> Iterator[tuple[Settings, str]]:
    with embedded_services(redis=options.embedded_redis, kafka=options.embedded_kafka) as (r, k):
        kafka: dict[str, Any] = {}
        redis_: dict[str, Any] = {}
        broker = f"external broker at {settings.kafka.bootstrap_servers}"
        if k is not None:
            kafka["bootstrap_servers"] = k.bootstrap_servers
            broker = f"{embedded_broker_version()} (embedded, in-memory storage)"
        if r is not None:
            redis_["url"] = r.url
        yield settings.with_overrides(kafka=kafka, redis=redis_), broker


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _workers_label(n: int) -> str:
    return f"{n} worker{'s' if n > 1 else ''}"


@dataclass
class _Session:
    """What every measurement of one bench run shares: names, the Redis probe, the machine and
    the events."""

    run: _Run
    probe: RedisProbe
    machine: dict[str, Any]
    events: BenchEvents
    pairs: list[tuple[bytes, bytes]]
    tags: list[str]  # deployments made, for their topics
    started: dt.datetime
    load_before: list[float]

    def about(self) -> dict[str, Any]:
        """The run's own part of its result document (``report.build``, ``build_latency``)."""
        return {
            "started": self.started.isoformat(timespec="seconds"),
            "options": self.run.options,
            "machine": self.machine,
            "load": {"before": self.load_before, "after": load_average()},
            "events": self.events,
        }


@contextlib.contextmanager
def _session(
    settings: Settings, options: BenchOptions, progress: Progress | None
) -> Iterator[_Session]:
    started, load_before = dt.datetime.now(dt.UTC), load_average()
    with _services(settings, options) as (settings, broker):
        client = connect(settings.redis)
        probe = RedisProbe(client)
        run = _Run(settings, options)
        tags: list[str] = []
        try:
            machine = describe_machine(probe.version(), broker)
            if progress:
                progress("simulate", 0, 0)
            events = prepare_events(
                options.scenario,
                options.seed,
                options.events,
                options.work_dir,
                status=(lambda _msg: progress("simulate", 0, 0)) if progress else None,
            )
            pairs = list(read_events(events.path))
            yield _Session(run, probe, machine, events, pairs, tags, started, load_before)
        finally:
            client.close()
            if not options.embedded_kafka:
                delete_topics(settings.kafka, run.topics(tags))


def run_bench(
    settings: Settings,
    options: BenchOptions,
    progress: Progress | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Run every measurement, or only the latency run if ``options.latency_rate`` is set;
    returns the result document (``report`` renders it)."""
    options.check()
    if options.latency_rate is not None:
        return run_latency(settings, options, progress, environ)
    with _session(settings, options, progress) as b:
        run, kafka = b.run, b.run.settings.kafka
        create_topic(kafka, run.topic, options.partitions)
        ends = produce_all(kafka, run.topic, b.pairs, len(b.pairs), _stage(progress, "produce"))
        # The ceiling is measured once before each detector run, not all at first: this
        # machine's speed drifts within minutes, and the share compares the two.
        ceiling: list[CeilingRun] = []
        measure_ceiling = functools.partial(
            consume_ceiling, kafka, run.topic, ends, CEILING_TIMEOUT_S, _stage(progress, "ceiling")
        )
        parallel = _parallel(options.workers, progress)
        detector, memory = _throughput(
            run, b.probe, ends, environ, b.tags, progress, lambda: ceiling.append(measure_ceiling())
        )
        maximum = statistics.median(r.events_per_s for r in detector[options.latency_workers])
        rate = maximum * options.latency_load
        latency = _latency(run, b.probe, b.pairs, rate, maximum, environ, b.tags, progress)
        replays, naive = _offline(run, b.probe, b.events, progress)
    return report.build(
        **b.about(),
        ceiling=ceiling,
        detector=detector,
        latency=latency,
        memory=memory,
        replays=replays,
        naive=naive,
        parallel=parallel,
    )


def run_latency(
    settings: Settings,
    options: BenchOptions,
    progress: Progress | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """The latency run alone, at ``options.latency_rate`` events/s: for sizing at a known
    load without measuring the maximum first (``report.latency_markdown`` renders it)."""
    options.check()
    if options.latency_rate is None:
        raise ConfigError("a latency run alone needs --latency-rate")
    with _session(settings, options, progress) as b:
        latency = _latency(
            b.run, b.probe, b.pairs, options.latency_rate, None, environ, b.tags, progress
        )
    return report.build_latency(**b.about(), latency=latency)


def _parallel(workers: int, progress: Progress | None) -> ParallelRun | None:
    """The machine's own 1 -> ``workers`` speedup, measured just before the workers'."""
    if workers < 2:
        return None
    if progress:
        progress("machine scaling", 0, 0)
    return measure_parallel(workers)


def _throughput(
    run: _Run,
    probe: RedisProbe,
    ends: dict[int, int],
    environ: Mapping[str, str],
    tags: list[str],
    progress: Progress | None,
    before_each: Callable[[], object],
) -> tuple[dict[int, list[DetectorRun]], dict[str, Any]]:
    options = run.options
    offsets = CommittedOffsets(run.settings.kafka, run.topic)
    detector: dict[int, list[DetectorRun]] = {}
    memory: dict[str, Any] = {}
    try:
        for workers in sorted({1, options.workers}):
            for i in range(options.repeat):
                before_each()
                tag = f"w{workers}r{i}"
                tags.append(tag)
                settings = run.deployment(tag, run.topic)
                deployment = Deployment(
                    settings, workers, options.work_dir / run.run_id / tag, environ
                )
                result = run_deployment(
                    deployment, offsets, ends, probe, _stage(progress, _workers_label(workers))
                )
                detector.setdefault(workers, []).append(result)
                if not memory:  # the state the whole topic left behind, measured once
                    memory = _memory(probe, settings, options.account_sample)
                probe.delete_prefix(settings.redis.key_prefix)
    finally:
        offsets.close()
    return detector, memory


def _memory(probe: RedisProbe, settings: Settings, sample: int) -> dict[str, Any]:
    prefix = settings.redis.key_prefix
    accounts = probe.account_bytes(prefix, sample)
    totals = accounts.totals()
    families = probe.campaign_bytes(prefix)
    index = [families[f] for f in INDEX_FAMILIES if f in families]
    index_entries = sum(f.entries for f in index)
    index_bytes = sum(f.bytes for f in index)

    def summary(values: list[int]) -> dict[str, float]:
        return {
            "median": percentile(values, 50),
            "p90": percentile(values, 90),
            "max": max(values) if values else 0,
            "mean": round(statistics.fmean(values), 1) if values else 0.0,
        }

    return {
        "accounts": accounts.accounts,
        "accounts_sampled": len(totals),
        "bytes_per_account": summary(totals),
        "bytes_per_account_by_key": {
            kind or "value": summary(accounts.of_kind(kind)) for kind in accounts.kinds()
        },
        "index_entries": index_entries,
        "index_bytes": index_bytes,
        "bytes_per_index_entry": round(ratio(index_bytes, index_entries), 1),
        "campaign_bytes": sum(f.bytes for f in families.values()),
        "campaign_keys": {name: asdict(f) for name, f in families.items()},
        "model_checkpoint_bytes": probe.key_bytes(checkpoint_key(settings)),
    }


def _latency(
    run: _Run,
    probe: RedisProbe,
    pairs: list[tuple[bytes, bytes]],
    rate: float,
    maximum: float | None,
    environ: Mapping[str, str],
    tags: list[str],
    progress: Progress | None,
) -> dict[str, Any]:
    """The latency run at ``rate`` events/s (``maximum``: what it is a share of, if any)."""
    options = run.options
    workers = options.latency_workers
    topic = f"bench.{run.run_id}.latency.queries"
    create_topic(run.settings.kafka, topic, options.partitions)
    tags.append("latency")
    settings = run.deployment("latency", topic)
    offsets = CommittedOffsets(run.settings.kafka, topic)
    try:
        result: LatencyRun = measure_latency(
            Deployment(settings, workers, options.work_dir / run.run_id / "latency", environ),
            offsets,
            pairs,
            rate_per_s=rate,
            seconds=options.latency_seconds,
            progress=_stage(progress, "latency"),
            own_cpus=options.latency_own_cpus,
        )
    finally:
        offsets.close()
        probe.delete_prefix(settings.redis.key_prefix)
    return {"max_events_per_s": maximum, **asdict(result)}


def _offline(
    run: _Run, probe: RedisProbe, events: BenchEvents, progress: Progress | None
) -> tuple[list[OfflineRun], dict[str, Any]]:
    options = run.options
    out = options.work_dir / run.run_id / "replay"
    settings = run.settings.with_overrides(redis={"key_prefix": run.prefix("replay")})
    url = run.settings.redis.url
    replays = []
    for _ in range(options.repeat):
        replays.append(
            run_replay(settings, events.path, url, out, progress=_stage(progress, "replay"))
        )
        probe.delete_prefix(settings.redis.key_prefix)
    subset = head(events.path, min(options.naive_events, events.count), out / "naive-events.jsonl")
    naive = run_replay(settings, subset, url, out, batch_size=1, progress=_stage(progress, "naive"))
    probe.delete_prefix(settings.redis.key_prefix)
    batched = run_replay(settings, subset, url, out, progress=_stage(progress, "batched"))
    probe.delete_prefix(settings.redis.key_prefix)
    return replays, {"one_event_per_batch": naive, "batched_same_events": batched}
