"""JSON-lines files: event-time order for replay, dead-letter output."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import orjson
import pytest

from detector.errors import InputFileError
from detector.events import Alert, DeadLetter, RawRecord
from detector.io.files import (
    JsonlAlertSink,
    JsonlDeadLetterSink,
    batches,
    read_lines,
    records_in_event_time,
)


def write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def ev(ts: object, eid: str) -> bytes:
    return orjson.dumps({"event_id": eid, "ts": ts})


def test_sorted_by_event_time_stably_with_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [ev(5, "a"), ev(1, "b"), ev(5, "c"), ev(3.5, "d"), ev(1, "e"), ev(5, "f")],
    )
    records = records_in_event_time(path)
    ids = [orjson.loads(r.value)["event_id"] for r in records]
    assert ids == ["b", "e", "d", "a", "c", "f"]  # equal ts keep file order
    assert [r.line for r in records] == [2, 5, 4, 1, 3, 6]
    assert [r.offset for r in records] == [0, 1, 2, 3, 4, 5]
    assert {r.partition for r in records} == {0}
    assert {r.topic for r in records} == {"file:events.jsonl"}
    assert all(r.key is None for r in records)


def test_unparseable_lines_are_kept_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [ev(2, "a"), b"{oops", ev("soon", "b"), b"[1,2]", ev(True, "c"), ev(1, "d"), b"\xff"],
    )
    records = records_in_event_time(path)
    assert len(records) == 7
    assert [r.value for r in records[:5]] == [
        b"{oops",
        ev("soon", "b"),
        b"[1,2]",
        ev(True, "c"),
        b"\xff",
    ]
    assert [r.line for r in records] == [2, 3, 4, 5, 7, 6, 1]


def test_crlf_and_blank_lines_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(ev(2, "a") + b"\r\n\r\n   \n" + ev(1, "b") + b"\r\n")
    assert read_lines(path) == [(1, ev(2, "a")), (4, ev(1, "b"))]
    assert [r.value for r in records_in_event_time(path)] == [ev(1, "b"), ev(2, "a")]


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_bytes(ev(5, "a") + b"\n\n" + ev(1, "b") + b"\n   \n{oops\n")
    # regression: lines were numbered after blank ones were dropped
    lines = {r.value: r.line for r in records_in_event_time(path)}
    assert lines == {ev(5, "a"): 1, ev(1, "b"): 3, b"{oops": 5}


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        records_in_event_time(tmp_path / "nope.jsonl")


def test_batches() -> None:
    records = [RawRecord("t", 0, i, None, b"") for i in range(7)]
    chunks = list(batches(records, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [r for c in chunks for r in c] == records
    assert list(batches([], 3)) == []


def letter(value: bytes, line: int) -> DeadLetter:
    return DeadLetter(
        "invalid_json", "unexpected character", RawRecord("file:x", 0, 0, None, value, line)
    )


SECRET = b'{"prompt": "SECRET PROMPT TEXT"'


def test_dead_letter_sink_with_payload() -> None:
    out = io.BytesIO()
    sink = JsonlDeadLetterSink(out, redact_payload=False)
    sink.send([letter(SECRET, 4), letter(b"\xff", 9)])
    sink.flush()
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert sink.count == 2
    assert rows[0] == {
        "reason": "invalid_json",
        "detail": "unexpected character",
        "source": "file:x",
        "line": 4,
        "payload_b64": base64.b64encode(SECRET).decode("ascii"),
    }
    assert base64.b64decode(rows[1]["payload_b64"]) == b"\xff"


def test_dead_letter_sink_redaction_omits_payload() -> None:
    out = io.BytesIO()
    sink = JsonlDeadLetterSink(out, redact_payload=True)
    sink.send([letter(SECRET, 4)])
    sink.send([letter(SECRET, 5)])
    raw = out.getvalue()
    rows = [orjson.loads(line) for line in raw.splitlines()]
    assert sink.count == 2
    assert [r["line"] for r in rows] == [4, 5]
    assert all("payload_b64" not in r for r in rows)
    assert b"SECRET" not in raw
    assert base64.b64encode(SECRET) not in raw


def test_alert_sink_writes_one_object_per_line() -> None:
    out = io.BytesIO()
    sink = JsonlAlertSink(out)
    alerts = [
        Alert(
            alert_id=i,
            ts=1.0,
            emitted_at=2.0,
            subject_type="account",
            subject_id="a",
            type="anomaly",
            severity="low",
            score=score,
            accounts=None,
            account_count=None,
            campaign_id=None,
            reasons=["r"],
            evidence=None,
            first_seen_ts=None,
            event_count=None,
            detector_version="1",
        )
        for i, score in (("x", 0.5), ("y", 1.0))
    ]
    sink.send(alerts)
    sink.flush()
    assert out.getvalue() == b"".join(alert.encode() + b"\n" for alert in alerts)
    assert [orjson.loads(line)["alert_id"] for line in out.getvalue().splitlines()] == ["x", "y"]
