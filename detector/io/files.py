"""JSON-lines files: event input for replay and validation, alert and dead-letter output."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from detector.errors import InputFileError
from detector.events import Alert, DeadLetter, RawRecord


def read_lines(path: Path) -> list[tuple[int, bytes]]:
    """Non-blank lines with their 1-based line numbers in the file."""
    try:
        with path.open("rb") as fh:
            return [(n, line.rstrip(b"\r\n")) for n, line in enumerate(fh, start=1) if line.strip()]
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from None


def _event_time(line: bytes) -> float:
    try:
        data = orjson.loads(line)
        ts = data.get("ts") if isinstance(data, dict) else None
    except Exception:  # whatever the line holds: the decoder refuses it with its reason
        return float("-inf")
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else float("-inf")


def records_in_event_time(path: Path) -> list[RawRecord]:
    """Every line as a record, stably sorted by event time; unreadable lines first.

    Offsets are positions in that order, so per-account watermarks work as on Kafka.
    """
    lines = read_lines(path)
    order = sorted(range(len(lines)), key=lambda i: _event_time(lines[i][1]))
    topic = f"file:{path.name}"
    return [
        RawRecord(topic, 0, pos, None, lines[i][1], line=lines[i][0]) for pos, i in enumerate(order)
    ]


def batches(records: list[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


class JsonlAlertSink:
    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh

    def send(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self._fh.write(alert.encode() + b"\n")

    def flush(self) -> None:
        self._fh.flush()


class JsonlDeadLetterSink:
    """One JSON object per refused line: reason, detail, line number and (unless redacted) payload."""

    def __init__(self, fh: IO[bytes], redact_payload: bool) -> None:
        self._fh = fh
        self._redact = redact_payload
        self.count = 0

    def send(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            record: dict[str, Any] = {
                "reason": letter.reason,
                "detail": letter.detail,
                "source": letter.record.topic,
                "line": letter.record.line,
            }
            if letter.error is not None:
                record["error"] = letter.error
            if not self._redact:
                record["payload_b64"] = base64.b64encode(letter.record.value).decode("ascii")
            self._fh.write(orjson.dumps(record) + b"\n")
            self.count += 1

    def flush(self) -> None:
        self._fh.flush()
