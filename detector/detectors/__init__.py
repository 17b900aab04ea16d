"""Detectors turn an account snapshot into findings. Each is small: ``evaluate`` then ``learn``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from detector.state.account import Snapshot

SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    score: float
    severity: str
    reasons: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)


class Detector(Protocol):
    """Score first, then learn, so an event never explains itself away."""

    def evaluate(self, snap: Snapshot, context: dict[str, Any]) -> Finding | None: ...

    def learn(self, snap: Snapshot, flagged: bool) -> None: ...
