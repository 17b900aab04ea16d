"""A processed batch on its way to being committed: the written-later protocol.

A batch's state is written at the start of the next batch, in the round trip that loads
that batch's state, or by ``Pipeline.flush`` when the stream pauses. Until then it is a
``PendingBatch``, which goes through these steps, in order:

1. ``SENT``: the batch is processed. Its alerts and dead letters are with the producer, and
   its state write (the account states, the commands that record alerts as sent, a model
   checkpoint when one is due) is encoded.
2. ``DELIVERED``: ``deliver`` returned: the broker acknowledged every alert and dead letter.
   If it raised, the producer dropped them and the next ``deliver`` sends them again. The
   state write never goes out before this step, so a crash re-sends alerts (same ids)
   rather than losing them.
3. ``WRITTEN``: Redis confirmed the state write (``written``). The batch's records are
   durable and the caller commits their offsets.

Records set aside while a batch waits (``Pipeline.reject``) join it: their dead letters are
delivered, and their offsets committed, with it. A pending batch with nothing to write
(``write`` is None) is written as soon as it is delivered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from detector.events import Alert, DeadLetter, RawRecord
from detector.io import AlertSink, DeadLetterSink
from detector.io.account_store import LoadedBatch


class Status(enum.Enum):
    SENT = "sent"
    DELIVERED = "delivered"
    WRITTEN = "written"


@dataclass
class StateWrite:
    """What a batch writes to Redis: its account states and commands in the same round trip."""

    states: LoadedBatch
    commands: list[tuple[Any, ...]]


@dataclass
class PendingBatch:
    write: StateWrite | None
    records: list[RawRecord]
    status: Status = Status.SENT
    # Alerts and dead letters handed to the producer and not yet acknowledged.
    unacknowledged: tuple[list[Alert], list[DeadLetter]] = field(default_factory=lambda: ([], []))
    dropped: bool = False  # a delivery failed: the producer no longer holds them

    @classmethod
    def sent(
        cls,
        write: StateWrite | None,
        records: list[RawRecord],
        alerts: list[Alert],
        dead_letters: list[DeadLetter],
        outputs: tuple[AlertSink, DeadLetterSink],
    ) -> PendingBatch:
        """Hand the batch's alerts and dead letters to the producer: step 1."""
        outputs[0].send(alerts)
        outputs[1].send(dead_letters)
        return cls(write, records, unacknowledged=(alerts, dead_letters))

    def join(
        self,
        records: list[RawRecord],
        dead_letters: list[DeadLetter],
        outputs: tuple[AlertSink, DeadLetterSink],
    ) -> None:
        """Records set aside while this batch waits, and their dead letters (sent now)."""
        outputs[1].send(dead_letters)
        alerts, letters = self.unacknowledged
        self.unacknowledged = (alerts, letters + dead_letters)
        self.records = self.records + records
        self.status = Status.SENT

    def deliver(self, outputs: tuple[AlertSink, DeadLetterSink]) -> None:
        """Wait until the broker acknowledged the alerts and dead letters: step 2."""
        if self.status is not Status.SENT:
            return
        alerts, letters = self.unacknowledged
        if self.dropped:
            outputs[0].send(alerts)
            outputs[1].send(letters)
        self.dropped = True  # until the flushes return
        outputs[0].flush()
        outputs[1].flush()
        self.unacknowledged, self.dropped = ([], []), False
        self.status = Status.DELIVERED

    def written(self) -> list[RawRecord]:
        """Redis confirmed the write: step 3. The records to commit."""
        assert self.status is Status.DELIVERED, f"a batch written while {self.status.value}"
        self.status = Status.WRITTEN
        return self.records
