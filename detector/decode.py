"""Bytes to events: JSON parsing and contract validation, valid and invalid as two streams."""

from __future__ import annotations

import math
from collections.abc import Iterable

import fastjsonschema
import orjson

from detector.contract import QUERY_EVENT_SCHEMA, load_schema, validator
from detector.events import CONTRACT_FIELDS, DeadLetter, QueryEvent, RawRecord

# Every reason a message can be refused for; metrics label values come only from here.
REASONS = (
    "invalid_utf8",
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "too_long",
    "too_short",
    "invalid_value",
    "schema_violation",
    "ts_in_future",
)
_RULE_REASON = {
    "required": "missing_field",
    "type": "wrong_type",
    "minimum": "out_of_range",
    "maximum": "out_of_range",
    "maxLength": "too_long",
    "minLength": "too_short",
    "enum": "invalid_value",
}
_DETAIL_MAX_CHARS = 300
_BOM = b"\xef\xbb\xbf"
# JSON integers past 64 bits come out of the parser as floats; the contract's integer fields
# (counts, an ASN) cannot mean such values, and they would turn sums into floats.
_INTEGER_FIELDS = tuple(
    name
    for name, spec in load_schema(QUERY_EVENT_SCHEMA)["properties"].items()
    if spec.get("type") == "integer"
)


def decode_record(record: RawRecord, not_after: float = math.inf) -> QueryEvent | DeadLetter:
    """One record as an event, or as a dead letter saying why not.

    ``not_after`` bounds ``ts``: one event far in the future would make every later
    event of its account look late, blinding the account's windows.
    """
    value = record.value
    if value.startswith(_BOM):  # RFC 8259 lets a parser ignore it; some Windows clients send one
        value = value[len(_BOM) :]
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if "not valid UTF-8" in str(exc) else "invalid_json"
        return DeadLetter(reason, str(exc)[:_DETAIL_MAX_CHARS], record)
    if not isinstance(data, dict):
        return DeadLetter("not_object", f"top-level JSON is a {type(data).__name__}", record)
    try:
        validator(QUERY_EVENT_SCHEMA)(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        reason = _RULE_REASON.get(exc.rule or "", "schema_violation")
        # The message names the field but never echoes its value (it may be prompt text).
        return DeadLetter(reason, _describe(exc), record)
    for name in _INTEGER_FIELDS:
        if isinstance(data.get(name), float):
            return DeadLetter("out_of_range", f"field {name}: integer beyond 64 bits", record)
    if data["ts"] > not_after:
        return DeadLetter(
            "ts_in_future", f"field ts: {data['ts']:.0f} is after {not_after:.0f}", record
        )
    known = {k: v for k, v in data.items() if k in CONTRACT_FIELDS}
    return QueryEvent(**known, partition=record.partition, offset=record.offset)


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    field = ".".join(str(p) for p in (exc.path or [])[1:]) or "(event)"
    if exc.rule == "required":
        return f"missing required field(s): {exc.message.split('contain ', 1)[-1]}"
    return f"field {field}: {exc.message.split(' ', 1)[-1]}"[:_DETAIL_MAX_CHARS]


def decode_batch(
    records: Iterable[RawRecord], not_after: float = math.inf
) -> tuple[list[QueryEvent], list[DeadLetter]]:
    oks: list[QueryEvent] = []
    errs: list[DeadLetter] = []
    for record in records:
        result = decode_record(record, not_after)
        (oks if isinstance(result, QueryEvent) else errs).append(result)
    return oks, errs
