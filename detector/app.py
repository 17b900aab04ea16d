"""Composition: the pipeline wired to Kafka (``run_service``) or to files (``replay``)."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

from detector import native
from detector.campaigns.step import GroupStep
from detector.config import Settings, redact_url
from detector.detectors.suite import DetectorSuite
from detector.embedded import EmbeddedRedis
from detector.errors import ConfigError, RedisUnavailable
from detector.health import Health, HealthServer
from detector.io import AlertSink, DeadLetterSink
from detector.io.account_store import AccountStore
from detector.io.campaign_store import CampaignStore
from detector.io.files import JsonlAlertSink, JsonlDeadLetterSink, batches, records_in_event_time
from detector.io.group_store import GroupStore
from detector.io.kafka import (
    KafkaAlertSink,
    KafkaDeadLetterSink,
    KafkaSource,
    configure_kafka_logs,
    ensure_topics,
    make_producer,
)
from detector.io.roundtrip import connect
from detector.isolation import process_isolating
from detector.metrics import Metrics
from detector.pipeline import Pipeline
from detector.service import Worker

log = logging.getLogger(__name__)
REDIS_WAIT_S = 30.0
# The pipeline allocates a few dozen objects per event, so with the default young-generation
# threshold (700) the cyclic collector ran every few events and, every ~10,000 events, walked
# the ~240,000 objects the imports and the model leave behind: ~90 ms each time, a tenth of
# the run and a latency spike. ``settle_heap`` freezes those and collects less often.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once set up: what exists now lives as long as the process, so keep the collector
    away from it (``gc.freeze``), and run young collections every ``GC_YOUNG_THRESHOLD``
    allocations. Events leave little cyclic garbage; the bound on it stays small."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def checkpoint_key(settings: Settings) -> str:
    return f"{settings.redis.key_prefix}model:{{{settings.kafka.group_id}}}"


def build_pipeline(
    settings: Settings,
    client: redis.Redis,
    alerts: AlertSink,
    dead_letters: DeadLetterSink,
    metrics: Metrics,
    checkpoint: str | None = None,
) -> Pipeline:
    suite = DetectorSuite(settings)
    if checkpoint is not None:
        blob = client.get(checkpoint)
        if blob and suite.restore(blob):
            log.info("restored model checkpoint (%d learned snapshots)", suite.anomaly.learned)
    store = AccountStore(
        connect(settings.redis, binary=True), settings.redis, settings.state, metrics
    )
    enabled = settings.campaigns.enabled
    groups = (
        GroupStep(
            GroupStore(client, settings.redis.key_prefix, settings.campaigns, metrics), settings
        )
        if enabled and settings.campaigns.stage == "groups"
        else None
    )
    campaigns = (
        CampaignStore(
            client,
            settings.redis.key_prefix,
            settings.campaigns,
            settings.alerting.max_accounts_listed,
            metrics,
            remember_accounts=settings.state.cache_accounts,
        )
        if enabled and settings.campaigns.stage == "links"
        else None
    )
    return Pipeline(
        settings, store, suite, alerts, dead_letters, metrics, checkpoint, campaigns, groups=groups
    )


def wait_for_redis(client: redis.Redis, url: str, timeout_s: float = REDIS_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            return
        except redis.AuthenticationError:
            raise ConfigError(
                f"redis at {redact_url(url)} refused the credentials: set the password in redis.url or REDIS_URL"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ConfigError(
                    f"redis at {redact_url(url)}: its TLS certificate is not trusted: "
                    "set redis.ssl_ca_file to the CA that signed it"
                ) from None
            if time.monotonic() > deadline:
                raise RedisUnavailable(
                    f"redis at {redact_url(url)} does not answer (set redis.url or REDIS_URL): {exc}"
                ) from None
            time.sleep(0.5)


def run_service(
    settings: Settings,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """``detector run``: consume, detect, alert, commit; until ``stop`` is set."""
    configure_kafka_logs()
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    health = Health()
    server = HealthServer(settings.metrics.host, settings.metrics.port, registry, health).start()
    if on_started:
        on_started(server.port)
    client = connect(settings.redis)
    producer = pipeline = None
    source: KafkaSource | None = None
    try:
        wait_for_redis(client, settings.redis.url)
        if settings.kafka.create_topics:
            ensure_topics(settings.kafka)
        # Alerts go out at once (a few per batch): the next batch waits for their
        # acknowledgement before its write, and a 5 ms linger was spent in that wait.
        producer = make_producer(settings.kafka, linger_ms=0)
        pipeline = build_pipeline(
            settings,
            client,
            KafkaAlertSink(producer, settings.kafka.alerts_topic),
            KafkaDeadLetterSink(
                producer,
                settings.kafka.dlq_topic,
                settings.service.redact_dlq_payload,
                settings.service.dlq_payload_max_bytes,
            ),
            metrics,
            checkpoint_key(settings),
        )
        source = KafkaSource(settings.kafka, metrics)
        settle_heap()
        log.info(
            "consuming %s as group %s; metrics on http://%s:%d/metrics; %s",
            settings.kafka.input_topic,
            settings.kafka.group_id,
            settings.metrics.host,
            server.port,
            native.build_label(),
        )
        if stale := native.stale_extensions():
            log.warning(
                "compiled modules older than their source or no longer listed (run "
                "`make compiled` again): %s",
                stale,
            )
        Worker(source, pipeline, settings.service, metrics, health).run(stop)
    finally:
        # Clients before the servers they talk to, the consumer first: it leaves the group,
        # so a worker that failed does not hold its partitions until the session times out.
        if source is not None:
            source.close()  # the worker closes it when it stops; a second close does nothing
        if producer is not None:
            producer.close(timeout=10)
        if pipeline is not None:
            pipeline.close()
        client.close()
        server.stop()


@dataclass(frozen=True)
class ReplayReport:
    events: int
    invalid: int
    duplicates: int
    alerts: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def _replay_redis(
    settings: Settings, redis_url: str | None
) -> Iterator[tuple[redis.Redis, Settings]]:
    if redis_url is None:
        with EmbeddedRedis() as server:
            local = settings.with_overrides(redis={"url": server.url})
            client = connect(local.redis)
            try:
                yield client, local
            finally:
                client.close()
        return
    # A shared Redis: a key prefix of its own per run, so replays never see each other's state.
    prefix = f"{settings.redis.key_prefix}replay:{uuid.uuid4().hex[:12]}:"
    local = settings.with_overrides(redis={"url": redis_url, "key_prefix": prefix})
    client = connect(local.redis)
    try:
        wait_for_redis(client, redis_url, timeout_s=5)
        yield client, local
    finally:
        client.close()


def replay(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    dead_letter_path: Path | None = None,
    redis_url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    registry: CollectorRegistry | None = None,
) -> ReplayReport:
    """``detector replay``: the streaming pipeline over a JSONL file, in event-time order."""
    records = records_in_event_time(input_path)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    dead_letter_path = dead_letter_path or output_path.with_suffix(".dead-letters.jsonl")
    invalid = duplicates = alerts = done = 0
    with (
        _replay_redis(settings, redis_url) as (client, local),
        output_path.open("wb") as out,
        dead_letter_path.open("wb") as dead_out,
    ):
        pipeline = build_pipeline(
            local,
            client,
            JsonlAlertSink(out),
            JsonlDeadLetterSink(dead_out, local.service.redact_dlq_payload),
            metrics,
        )
        settle_heap()
        started = time.perf_counter()
        for batch in batches(records, local.kafka.poll_max_records):
            result = process_isolating(batch, pipeline.process, pipeline.reject, metrics)
            assert result is not None  # only a stop request gives None, and replay has none
            invalid += result.invalid
            duplicates += result.duplicates
            alerts += len(result.alerts)
            done += len(batch)
            if progress:
                progress(done, len(records))
        pipeline.flush()
        seconds = time.perf_counter() - started
        pipeline.close()
    if not invalid:
        dead_letter_path.unlink(missing_ok=True)
    return ReplayReport(len(records), invalid, duplicates, alerts, seconds)
