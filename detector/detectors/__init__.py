"""Detectors turn an account snapshot into findings. Each is small: ``evaluate`` then ``learn``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, overload

import msgspec

from detector.state.account import Snapshot

SEVERITIES = ("low", "medium", "high", "critical")


class Reasons(Sequence[str]):
    """The tuple ``write()`` returns, written when first read: most findings are never
    alerted (cooldown), so most reasons are never read. ``write`` must give the same text
    whenever it runs: it may not read state that changes afterwards.

    >>> r = Reasons(lambda: ("a", "b"))
    >>> list(r), r[0], len(r), r == ("a", "b")
    (['a', 'b'], 'a', 2, True)
    """

    __slots__ = ("_text", "_write")

    def __init__(self, write: Callable[[], tuple[str, ...]]) -> None:
        self._write: Callable[[], tuple[str, ...]] | None = write
        self._text: tuple[str, ...] = ()

    def _written(self) -> tuple[str, ...]:
        if self._write is not None:
            self._text, self._write = self._write(), None
        return self._text

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._written()[index]

    def __len__(self) -> int:
        return len(self._written())

    def __iter__(self) -> Iterator[str]:
        return iter(self._written())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasons):
            other = other._written()
        return self._written() == other

    def __repr__(self) -> str:
        return repr(self._written())


# A msgspec struct, cheaper to build than a frozen dataclass: most events of a suspect
# account make a finding, most of them in cooldown.
class Finding(msgspec.Struct, frozen=True, gc=False):
    type: str
    score: float
    severity: str
    reasons: Sequence[str]  # a tuple, or Reasons written when read
    evidence: dict[str, Any] = {}  # msgspec copies an empty default

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)


class Detector(Protocol):
    """Score first, then learn, so an event never explains itself away."""

    def evaluate(self, snap: Snapshot, context: dict[str, Any]) -> Finding | None: ...

    def learn(self, snap: Snapshot, flagged: bool) -> None: ...
