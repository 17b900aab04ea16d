"""Bytes to events: JSON parsing and contract validation, valid and invalid as two streams.

Two paths, one contract. The fast path is a msgspec decoder generated from the contract's
JSON schema: parsing and checking in C, about 1 us per event. Whatever it refuses takes the
reference path (orjson and the schema itself, fastjsonschema), which decides, and names
the reason: the fast path only ever accepts what the schema accepts. One difference: the
fast path skips an unknown field without reading it through, so bytes there that are not
valid UTF-8, or a number out of a double's range, do not refuse an event whose contract
fields are valid (the contract ignores unknown fields).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal

import fastjsonschema
import msgspec
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
    "undecodable",
    "processing_error",
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

# The contract's number fields are floats in an event, also when the JSON wrote an integer
# (as the fast path decodes them; past 2**53 the two differ in the last digit).
_NUMBER_FIELDS = tuple(
    name
    for name, spec in load_schema(QUERY_EVENT_SCHEMA)["properties"].items()
    if spec.get("type") in ("number", ["number", "null"])
)


def _wire_type(spec: dict[str, Any]) -> Any:
    """The msgspec type of one schema property, with the same bounds."""
    if "enum" in spec:
        return Literal[tuple(spec["enum"])]
    meta: dict[str, Any] = {}
    if spec["type"] == "string":
        meta = {"min_length": spec.get("minLength"), "max_length": spec.get("maxLength")}
        base: Any = str
    elif spec["type"] == "number":
        meta, base = {"ge": spec.get("minimum")}, float
    elif spec["type"] == "integer":
        # Past int64 (msgspec bounds stop there) the reference path decides: see _INTEGER_FIELDS.
        meta, base = {"ge": spec.get("minimum"), "le": 2**63 - 1}, int
    else:
        base = {"boolean": bool}[spec["type"]]
    meta = {k: v for k, v in meta.items() if v is not None}
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


def _wire_decoder() -> msgspec.json.Decoder[Any]:
    schema = load_schema(QUERY_EVENT_SCHEMA)
    required = set(schema["required"])
    fields = [
        (name, _wire_type(spec)) if name in required else (name, _wire_type(spec), None)
        for name, spec in schema["properties"].items()
    ]  # a null is refused (the schema has no null), a missing optional field is None
    wire = msgspec.defstruct("WireEvent", fields, frozen=True, gc=False)
    return msgspec.json.Decoder(wire)


_FAST: Final = _wire_decoder()
_ORDER = [f for f in QueryEvent.__struct_fields__ if f not in ("partition", "offset")]
if list(load_schema(QUERY_EVENT_SCHEMA)["properties"]) != _ORDER:
    raise RuntimeError("QueryEvent's fields must follow the contract's property order")


def decode_record(record: RawRecord, not_after: float = math.inf) -> QueryEvent | DeadLetter:
    """One record as an event, or as a dead letter saying why not; never raises.

    ``not_after`` bounds ``ts``: one event far in the future would make every later
    event of its account look late, blinding the account's windows. Whatever a parser
    raises that nobody foresaw (a recursion limit, memory, ...) refuses the record as
    ``undecodable`` with the exception's class: one record must never stop a stream.
    """
    try:
        return _decode(record, not_after)
    except Exception as exc:  # the message may quote the payload: only the class goes out
        return undecodable(record, exc)


def undecodable(record: RawRecord, exc: BaseException) -> DeadLetter:
    name = type(exc).__name__
    return DeadLetter("undecodable", f"{name} while decoding", record, error=name)


def _decode(record: RawRecord, not_after: float) -> QueryEvent | DeadLetter:
    try:
        wire = _FAST.decode(record.value)
    except Exception:  # the reference path decides, and names the reason
        return _decode_slowly(record, not_after)
    if wire.ts > not_after:
        return _too_late(wire.ts, not_after, record)
    fields = msgspec.structs.astuple(wire)  # in QueryEvent's order (checked at import)
    return QueryEvent(*fields[:4], record.partition, record.offset, *fields[4:])  # type: ignore[call-arg]


def _decode_slowly(record: RawRecord, not_after: float) -> QueryEvent | DeadLetter:
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
    for name in _NUMBER_FIELDS:
        if type(data.get(name)) is int:
            data[name] = float(data[name])
    if data["ts"] > not_after:
        return _too_late(data["ts"], not_after, record)
    known = {k: v for k, v in data.items() if k in CONTRACT_FIELDS}
    return QueryEvent(**known, partition=record.partition, offset=record.offset)


def _too_late(ts: float, not_after: float, record: RawRecord) -> DeadLetter:
    detail = f"field ts: {ts:.0f} is after {not_after:.0f}"[:_DETAIL_MAX_CHARS]
    return DeadLetter("ts_in_future", detail, record)


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
        if isinstance(result, QueryEvent):
            oks.append(result)
        else:
            errs.append(result)
    return oks, errs
