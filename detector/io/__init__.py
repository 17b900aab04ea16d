"""Adapters between the pipeline and the outside: Kafka topics and JSON-lines files."""

from __future__ import annotations

from typing import Protocol

from detector.events import Alert, DeadLetter


class AlertSink(Protocol):
    def send(self, alerts: list[Alert]) -> None: ...

    def flush(self) -> None:
        """Return once every alert sent so far is durable; raise ``ServiceUnavailable`` (``KafkaUnavailable`` for Kafka) if not."""


class DeadLetterSink(Protocol):
    def send(self, letters: list[DeadLetter]) -> None: ...

    def flush(self) -> None: ...
