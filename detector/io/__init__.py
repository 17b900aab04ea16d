"""Adapters between the pipeline and the outside: Kafka topics and JSON-lines files."""

from __future__ import annotations

from typing import Any, Protocol

from detector.events import DeadLetter


class AlertSink(Protocol):
    def send(self, alerts: list[dict[str, Any]]) -> None: ...

    def flush(self) -> None:
        """Return once every alert sent so far is durable; raise ``ServiceUnavailable`` (``KafkaUnavailable`` for Kafka) if not."""


class DeadLetterSink(Protocol):
    def send(self, letters: list[DeadLetter]) -> None: ...

    def flush(self) -> None: ...
