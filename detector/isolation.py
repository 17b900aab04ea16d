"""A batch that fails in a way nobody foresaw: retry it once, then split it to find the
records that cause the failure; those are dead-lettered and the rest processed, in order.

The model is Kafka Streams' processing exception handler: one record must never stop a
partition. Outages are not failures of a record: ``ServiceUnavailable`` (Redis or the
broker away) and interrupts pass through, so the caller's retry with backoff keeps the
batch whole. Halves are processed left before right, so offsets and per-account
watermarks still advance in order. Redis gives each try the states as they were, and the
pipeline keeps the shared models from learning an event twice (``Pipeline.process``).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Final

from detector.errors import ServiceUnavailable
from detector.events import RawRecord
from detector.metrics import Metrics
from detector.pipeline import BatchResult

log = logging.getLogger(__name__)

TRIES: Final = 2  # a batch or part of one fails twice before it is split

# Processes a batch (None: asked to stop while a dependency was down).
Process = Callable[[list[RawRecord]], BatchResult | None]
# Dead-letters records whose processing failed: reason ``processing_error``.
Reject = Callable[[list[RawRecord], Exception], BatchResult | None]


def process_isolating(
    records: list[RawRecord], process: Process, reject: Reject, metrics: Metrics
) -> BatchResult | None:
    """``process(records)``; if it keeps failing, the records that fail are rejected alone.

    Returns the results of every part combined, or None if a part returned None.
    """
    error: Exception | None = None
    for attempt in range(1, TRIES + 1):
        try:
            return process(records)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            _failed(exc, records, attempt, metrics)
            error = exc
    assert error is not None
    if len(records) == 1:
        return reject(records, error)
    middle = len(records) // 2
    left = process_isolating(records[:middle], process, reject, metrics)
    if left is None:
        return None
    right = process_isolating(records[middle:], process, reject, metrics)
    return None if right is None else left.combined(right)


def _failed(exc: Exception, records: list[RawRecord], attempt: int, metrics: Metrics) -> None:
    """Count and log a failure by its class and where it was raised: the message may
    quote an event's text, so it is never logged."""
    name = type(exc).__name__
    metrics.batch_failures.labels(name).inc()
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename}:{frame.lineno} in {frame.name}" if frame else "?"
    first = records[0]
    log.error(
        "%s raised at %s while processing %d record(s) from %s[%d] offset %d (try %d of %d)%s",
        name,
        where,
        len(records),
        first.topic,
        first.partition,
        first.offset,
        attempt,
        TRIES,
        "" if attempt < TRIES else "; splitting" if len(records) > 1 else "; dead-lettering it",
    )
