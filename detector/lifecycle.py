"""A processed batch on its way to being committed: the written-later protocol.

A batch's state is written at the start of the next batch, in the round trip that loads
that batch's state, or by ``Pipeline.flush`` when the stream pauses. Until then it is a
``PendingBatch``, which goes through these steps, in order:

1. ``SENT``: the batch is processed. Its alerts and dead letters are with the producer, and
   its state write (the account states, the commands that record alerts as sent, a model
   checkpoint when one is due) is encoded.
2. ``DELIVERED``: ``deliver`` returned: the broker acknowledged every alert and dead letter.
   If a sink's flush raised, that sink dropped what it held and the next ``deliver`` sends
   it again; the other sink's are not sent twice. The state write never goes out before this
   step, so a crash re-sends alerts (same ids) rather than losing them.
3. ``WRITTEN``: Redis confirmed the state write (``written``). The batch's records are
   durable and the caller commits their offsets.

Records set aside while a batch waits (``Pipeline.reject``) join it: their dead letters are
delivered, and their offsets committed, with it. Joining records the batch holds already
does nothing, so a reject retried after a failed delivery sends its dead letters once. A
pending batch with nothing to write (``write`` is None) is written as soon as it is delivered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from detector.events import Alert, DeadLetter, RawRecord
from detector.io import AlertSink, DeadLetterSink
from detector.io.account_store import LoadedBatch

T = TypeVar("T")


class Status(enum.Enum):
    SENT = "sent"
    DELIVERED = "delivered"
    WRITTEN = "written"


@dataclass
class StateWrite:
    """What a batch writes to Redis: its account states and commands in the same round trip."""

    states: LoadedBatch
    commands: list[tuple[Any, ...]]


class Sink(Protocol[T]):
    """An ``AlertSink`` or a ``DeadLetterSink``."""

    def send(self, items: list[T], /) -> None: ...

    def flush(self) -> None: ...


@dataclass
class Outbox(Generic[T]):
    """What a batch handed one sink (its alerts, or its dead letters), until acknowledged."""

    items: list[T] = field(default_factory=list)
    dropped: bool = False  # the sink's flush failed: it no longer holds them

    def add(self, sink: Sink[T], items: list[T]) -> None:
        if not self.dropped:  # else ``deliver`` sends them with the others
            sink.send(items)
        self.items = self.items + items

    def deliver(self, sink: Sink[T]) -> None:
        if self.dropped:
            sink.send(self.items)
        self.dropped = True  # until the flush returns
        sink.flush()
        self.items, self.dropped = [], False


@dataclass
class PendingBatch:
    write: StateWrite | None
    records: list[RawRecord]
    status: Status = Status.SENT
    # Alerts and dead letters handed to the producer and not yet acknowledged: one outbox per
    # sink, as each sink's flush tells of its own only.
    alerts: Outbox[Alert] = field(default_factory=Outbox)
    letters: Outbox[DeadLetter] = field(default_factory=Outbox)

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
        pending = cls(write, records)
        pending.alerts.add(outputs[0], alerts)
        pending.letters.add(outputs[1], dead_letters)
        return pending

    def join(
        self,
        records: list[RawRecord],
        dead_letters: list[DeadLetter],
        outputs: tuple[AlertSink, DeadLetterSink],
    ) -> None:
        """Records set aside while this batch waits, and their dead letters (sent now); those
        it holds already (a retried reject) are not joined again."""
        held = {_position(r) for r in self.records}
        records = [r for r in records if _position(r) not in held]
        if not records:
            return
        self.letters.add(outputs[1], [d for d in dead_letters if _position(d.record) not in held])
        self.records = self.records + records
        self.status = Status.SENT

    def deliver(self, outputs: tuple[AlertSink, DeadLetterSink]) -> None:
        """Wait until the broker acknowledged the alerts and dead letters: step 2."""
        if self.status is not Status.SENT:
            return
        self.alerts.deliver(outputs[0])
        self.letters.deliver(outputs[1])
        self.status = Status.DELIVERED

    def written(self) -> list[RawRecord]:
        """Redis confirmed the write: step 3. The records to commit."""
        assert self.status is Status.DELIVERED, f"a batch written while {self.status.value}"
        self.status = Status.WRITTEN
        return self.records


def _position(record: RawRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset
