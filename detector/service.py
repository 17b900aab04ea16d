"""The streaming worker: poll a batch, process it until it succeeds, commit what is durable, repeat."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from detector.config import ServiceSettings
from detector.errors import RedisUnavailable, ServiceUnavailable
from detector.events import RawRecord
from detector.health import Health
from detector.io.kafka import KafkaSource
from detector.isolation import process_isolating
from detector.metrics import Metrics
from detector.pipeline import BatchResult, Pipeline

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        source: KafkaSource,
        pipeline: Pipeline,
        settings: ServiceSettings,
        metrics: Metrics,
        health: Health,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.settings = settings
        self.metrics = metrics
        self.health = health

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; the batch in hand is finished, written and committed first."""
        self._set_ready(True)
        while not stop.is_set():
            self.health.beat()
            try:
                # With a batch unwritten, do not wait: if nothing is already here, write it now
                # (and commit) instead of holding it until the next batch arrives.
                records = self.source.poll(wait=not self.pipeline.unwritten)
            except ServiceUnavailable as exc:
                self._wait_after_failure("kafka", exc, stop, attempt=1)
                continue
            if not records:
                self._check_broker()  # an empty poll is also what a lost broker looks like
                # The stream paused: write the last batch now rather than with the next one.
                self._commit(self._until_done(self.pipeline.flush, stop))
                continue
            result = process_isolating(
                records,
                lambda part: self._process(part, stop),
                lambda part, error: self._reject(part, error, stop),
                self.metrics,
            )
            if result is None:
                break  # asked to stop while a dependency was down: leave the batch uncommitted
        self._commit(self._until_done(self.pipeline.flush, stop))  # one try: we are stopping
        self.source.close()

    def _process(self, records: list[RawRecord], stop: threading.Event) -> BatchResult | None:
        # The previous batch is committed as soon as this one's first round trip wrote it.
        return self._until_done(lambda: self.pipeline.process(records, self._commit_soon), stop)

    def _reject(
        self, records: list[RawRecord], error: Exception, stop: threading.Event
    ) -> BatchResult | None:
        result = self._until_done(lambda: self.pipeline.reject(records, error), stop)
        self._commit(result)
        return result

    def _commit_soon(self, records: list[RawRecord]) -> None:
        self.source.commit(records, wait=False)  # the worker carries on processing meanwhile

    def _commit(self, result: BatchResult | None) -> None:
        if result is not None and result.durable:
            self.source.commit(result.durable)

    def _until_done(
        self, step: Callable[[], BatchResult], stop: threading.Event
    ) -> BatchResult | None:
        """``step`` retried with backoff while a dependency is down; None if asked to stop."""
        attempt = 0
        while True:
            try:
                result = step()
            except ServiceUnavailable as exc:
                attempt += 1
                dependency = "redis" if isinstance(exc, RedisUnavailable) else "kafka"
                self._wait_after_failure(dependency, exc, stop, attempt)
                if stop.is_set():
                    return None
                continue
            if attempt:
                log.info("recovered after %d failed attempts", attempt)
                self.source.release()
                self._set_ready(True)
            for account in result.conflicts:
                log.warning(
                    "state of account %s changed under this worker; its write was skipped", account
                )
            return result

    def _wait_after_failure(
        self, dependency: str, exc: Exception, stop: threading.Event, attempt: int
    ) -> None:
        self.metrics.dependency_errors.labels(dependency).inc()
        self._set_ready(False, f"{dependency} unavailable")
        delay = min(
            self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** (attempt - 1)
        )
        log.warning("%s (attempt %d); retrying in %.1f s", exc, attempt, delay)
        with contextlib.suppress(ServiceUnavailable):
            self.source.hold()  # stay in the group without fetching more
        stop.wait(delay)

    def _check_broker(self) -> None:
        connected = self.source.connected()
        if connected == self.health.ready:
            return
        if connected:
            log.info("broker reachable again")
            self._set_ready(True)
        else:
            log.warning("no broker connection; kafka-python keeps reconnecting")
            self.metrics.dependency_errors.labels("kafka").inc()
            self._set_ready(False, "kafka unavailable")

    def _set_ready(self, ready: bool, reason: str = "") -> None:
        self.health.set_ready(ready, reason)
        self.metrics.ready.set(1 if ready else 0)
