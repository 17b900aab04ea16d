"""The written-later protocol of a batch, step by step, with sinks that record what they get."""

from __future__ import annotations

import pytest

from detector.errors import KafkaUnavailable
from detector.events import DeadLetter, RawRecord
from detector.lifecycle import PendingBatch, Status


class Sink:
    """Stands in for a producer: what was sent, what was flushed, and a flush that can fail."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.flushed = 0
        self.fail = False

    def send(self, items: list) -> None:  # type: ignore[type-arg]
        self.sent.extend(items)

    def flush(self) -> None:
        if self.fail:
            self.sent.clear()  # a failed flush: the producer dropped what it held
            raise KafkaUnavailable("kafka: flush timed out")
        self.flushed += 1


def _record(offset: int) -> RawRecord:
    return RawRecord("q", 0, offset, None, b"{}")


def _letter(offset: int) -> DeadLetter:
    return DeadLetter("invalid_json", "x", _record(offset))


def test_a_batch_is_sent_then_delivered_then_written() -> None:
    alerts, letters = Sink(), Sink()
    pending = PendingBatch.sent(None, [_record(1)], ["alert"], [_letter(2)], (alerts, letters))  # type: ignore[list-item]
    assert pending.status is Status.SENT and alerts.sent == ["alert"] and len(letters.sent) == 1
    pending.deliver((alerts, letters))
    assert pending.status is Status.DELIVERED and alerts.flushed == letters.flushed == 1
    pending.deliver((alerts, letters))  # delivered once is enough
    assert alerts.flushed == 1
    assert pending.written() == [_record(1)]
    assert pending.status is Status.WRITTEN


def test_a_failed_delivery_sends_everything_again_on_the_next_try() -> None:
    alerts, letters = Sink(), Sink()
    pending = PendingBatch.sent(None, [], ["a1", "a2"], [_letter(3)], (alerts, letters))  # type: ignore[list-item]
    alerts.fail = True
    with pytest.raises(KafkaUnavailable):
        pending.deliver((alerts, letters))
    assert pending.status is Status.SENT and alerts.sent == []
    alerts.fail = False
    pending.deliver((alerts, letters))
    assert alerts.sent == ["a1", "a2"] and pending.status is Status.DELIVERED


def test_records_set_aside_join_the_batch_and_need_delivering() -> None:
    alerts, letters = Sink(), Sink()
    pending = PendingBatch.sent(None, [_record(1)], [], [], (alerts, letters))
    pending.deliver((alerts, letters))
    pending.join([_record(2)], [_letter(2)], (alerts, letters))
    assert pending.status is Status.SENT and len(letters.sent) == 1
    with pytest.raises(AssertionError):
        pending.written()  # never before its dead letters are acknowledged
    pending.deliver((alerts, letters))
    assert [r.offset for r in pending.written()] == [1, 2]


def test_a_failed_delivery_sends_again_only_what_its_sink_dropped() -> None:
    alerts, letters = Sink(), Sink()
    pending = PendingBatch.sent(None, [], ["a1"], [_letter(3)], (alerts, letters))  # type: ignore[list-item]
    alerts.fail = True  # the dead letters' sink is not flushed: it still holds them
    with pytest.raises(KafkaUnavailable):
        pending.deliver((alerts, letters))
    alerts.fail, letters.fail = False, True  # the alerts are delivered, the dead letters dropped
    with pytest.raises(KafkaUnavailable):
        pending.deliver((alerts, letters))
    letters.fail = False
    pending.deliver((alerts, letters))
    assert alerts.sent == ["a1"] and letters.sent == [_letter(3)]
    assert pending.status is Status.DELIVERED


def test_records_joined_again_after_a_failed_delivery_are_sent_once() -> None:
    alerts, letters = Sink(), Sink()
    pending = PendingBatch.sent(None, [_record(1)], [], [], (alerts, letters))
    letters.fail = True
    pending.join([_record(2)], [_letter(2)], (alerts, letters))
    with pytest.raises(KafkaUnavailable):
        pending.deliver((alerts, letters))
    letters.fail = False
    pending.join([_record(2)], [_letter(2)], (alerts, letters))  # the reject, retried
    pending.join([_record(3)], [_letter(3)], (alerts, letters))  # held until the next deliver
    pending.deliver((alerts, letters))
    assert letters.sent == [_letter(2), _letter(3)]
    assert [r.offset for r in pending.written()] == [1, 2, 3]
