"""Bytes to events: every refusal reason, no prompt text in dead letters, nothing lost."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.decode import REASONS, _decode_slowly, decode_batch, decode_record
from detector.events import DeadLetter, QueryEvent, RawRecord

BASE: dict[str, Any] = {"event_id": "e1", "ts": 1_700_000_000.5, "account_id": "a1", "model": "m"}
SECRET = "SECRET-PROMPT-TEXT"


def record(value: bytes, partition: int = 3, offset: int = 17) -> RawRecord:
    return RawRecord("llm.queries", partition, offset, b"a1", value)


def event(**fields: Any) -> bytes:
    return orjson.dumps({**BASE, **fields})


def refused(value: bytes) -> DeadLetter:
    result = decode_record(record(value))
    assert isinstance(result, DeadLetter), result
    assert result.reason in REASONS
    return result


def test_valid_event_decodes_with_partition_and_offset() -> None:
    result = decode_record(
        record(event(prompt="hi", input_tokens=5, status="ok"), partition=2, offset=41)
    )
    assert isinstance(result, QueryEvent)
    assert (result.event_id, result.ts, result.account_id, result.model) == (
        "e1",
        1_700_000_000.5,
        "a1",
        "m",
    )
    assert (result.partition, result.offset) == (2, 41)
    assert (result.prompt, result.input_tokens, result.status) == ("hi", 5, "ok")
    assert result.source_ip is None


def test_a_leading_byte_order_mark_is_ignored() -> None:
    result = decode_record(record(b"\xef\xbb\xbf" + event()))
    assert isinstance(result, QueryEvent) and result.event_id == "e1"


def test_escaped_control_characters_and_64_bit_integers_are_accepted() -> None:
    result = decode_record(record(event(account_id="a\u0000\x1b", asn=2**64 - 1)))
    assert isinstance(result, QueryEvent)
    assert result.account_id == "a\u0000\x1b" and result.asn == 2**64 - 1


def test_a_multi_megabyte_prompt_decodes() -> None:
    prompt = "Explain the theory of everything. " * 150_000  # 5 MB
    result = decode_record(record(event(prompt=prompt)))
    assert isinstance(result, QueryEvent) and len(result.prompt or "") == len(prompt)


def test_unknown_fields_are_ignored() -> None:
    result = decode_record(record(event(zzz_future_field={"x": 1}, another=[1, 2])))
    assert isinstance(result, QueryEvent)
    assert not hasattr(result, "zzz_future_field")


def test_payload_cannot_set_partition_or_offset() -> None:
    result = decode_record(record(event(partition=99, offset=99), partition=1, offset=5))
    assert isinstance(result, QueryEvent)
    assert (result.partition, result.offset) == (1, 5)


def test_dead_letter_keeps_the_record() -> None:
    raw = record(b"{oops", partition=4, offset=8)
    result = decode_record(raw)
    assert isinstance(result, DeadLetter)
    assert result.record == raw


@pytest.mark.parametrize(
    ("value", "reason", "detail_part"),
    [
        (b"\xff\xfe{}", "invalid_utf8", "UTF-8"),
        (b'{"event_id":"e\xff","ts":1,"account_id":"a","model":"m"}', "invalid_utf8", "UTF-8"),
        (b"{oops", "invalid_json", ""),
        (b"", "invalid_json", ""),
        (b'{"event_id":"e1","ts":NaN,"account_id":"a","model":"m"}', "invalid_json", ""),
        (b'{"event_id":"e1","ts":Infinity,"account_id":"a","model":"m"}', "invalid_json", ""),
        (b'{"event_id":"e1","ts":-Infinity,"account_id":"a","model":"m"}', "invalid_json", ""),
        (b'{"event_id":"e1","ts":1e400,"account_id":"a","model":"m"}', "invalid_json", ""),
        (event() + b" trailing", "invalid_json", ""),
        (b"[1, 2]", "not_object", "list"),
        (b'"just a string"', "not_object", "str"),
        (b"null", "not_object", ""),
        (b"42", "not_object", "int"),
        (orjson.dumps({"ts": 1}), "missing_field", "event_id"),
        (orjson.dumps({k: v for k, v in BASE.items() if k != "model"}), "missing_field", "model"),
        (event(ts="1"), "wrong_type", "ts"),
        (event(ts=True), "wrong_type", "ts"),
        (event(asn=1.5), "wrong_type", "asn"),
        (event(stream="yes"), "wrong_type", "stream"),
        (event(ts=-1), "out_of_range", "ts"),
        (event(input_tokens=-3), "out_of_range", "input_tokens"),
        (event(event_id="x" * 129), "too_long", "event_id"),
        (event(country="FRA"), "too_long", "country"),
        (event(event_id=""), "too_short", "event_id"),
        (event(account_id=""), "too_short", "account_id"),
        (event(status="exploded"), "invalid_value", "status"),
        (
            event()[:-1] + b',"asn":' + b"9" * 40 + b"}",
            "out_of_range",
            "asn: integer beyond 64 bits",
        ),
        (event()[:-1] + b',"tools":1' + b"0" * 25 + b"}", "out_of_range", "tools"),
        (b'{"event_id":"e\x01","ts":1,"account_id":"a","model":"m"}', "invalid_json", "control"),
        (b"\xef\xbb\xbf\xef\xbb\xbf" + event(), "invalid_json", ""),  # one BOM is forgiven
    ],
)
def test_refusal_reasons(value: bytes, reason: str, detail_part: str) -> None:
    letter = refused(value)
    assert letter.reason == reason
    assert detail_part in letter.detail
    assert len(letter.detail) <= 300


@pytest.mark.parametrize(
    "value",
    [
        event(prompt=12345, note=SECRET),
        event(prompt=[SECRET]),
        event(prompt={"text": SECRET}),
        event(system_prompt=[SECRET]),
        event(user_agent=SECRET * 100),
        event(country=SECRET),
        event(status=SECRET),
        event(event_id=SECRET * 10),
        event(source_ip=SECRET * 10),
    ],
)
def test_dead_letter_detail_never_echoes_the_value(value: bytes) -> None:
    letter = refused(value)
    assert letter.reason in {"wrong_type", "too_long", "invalid_value"}
    assert SECRET not in letter.detail
    assert "SECRET" not in letter.detail


def test_wrong_type_detail_names_the_field() -> None:
    letter = refused(event(prompt=[SECRET]))
    assert letter.detail.startswith("field prompt")


def test_decode_batch_splits_and_loses_nothing() -> None:
    values = [event(event_id=f"e{i}") for i in range(5)] + [
        b"{oops",
        b"[]",
        event(ts=-1),
        orjson.dumps({"ts": 1}),
    ]
    records = [record(v, offset=i) for i, v in enumerate(values)]
    oks, errs = decode_batch(records)
    assert len(oks) + len(errs) == len(records)
    assert [e.event_id for e in oks] == [f"e{i}" for i in range(5)]
    assert [e.offset for e in oks] == [0, 1, 2, 3, 4]
    assert [d.reason for d in errs] == [
        "invalid_json",
        "not_object",
        "out_of_range",
        "missing_field",
    ]
    assert [d.record.offset for d in errs] == [5, 6, 7, 8]


def test_decode_batch_of_nothing() -> None:
    assert decode_batch([]) == ([], [])


def test_decode_batch_accepts_any_iterable() -> None:
    oks, errs = decode_batch(record(event(event_id=f"g{i}")) for i in range(3))
    assert len(oks) == 3
    assert errs == []


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson can serialise
    | st.floats()
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": _json_values,
        "ts": _json_values,
        "account_id": _json_values,
        "model": _json_values,
        "prompt": _json_values,
        "status": _json_values,
        "asn": _json_values,
    },
)


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=300),
        _json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)),
        _event_like.map(lambda v: orjson.dumps(v)),
    )
)
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    result = decode_record(record(value))
    assert isinstance(result, QueryEvent | DeadLetter)
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS
        assert result.record.value == value
    else:
        assert (result.partition, result.offset) == (3, 17)


def test_far_future_timestamp_is_refused_when_bounded() -> None:
    value = b'{"event_id": "e", "ts": 4102444800, "account_id": "a", "model": "m"}'  # 2100-01-01
    record = RawRecord("t", 0, 0, None, value)
    letter = decode_record(record, not_after=1_800_000_000.0)
    assert isinstance(letter, DeadLetter) and letter.reason == "ts_in_future"
    assert "4102444800" in letter.detail
    assert isinstance(decode_record(record), QueryEvent)  # unbounded: the contract allows it


_valid_like = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=130),
        "ts": st.one_of(st.floats(), st.integers(min_value=-5, max_value=2**70), st.booleans()),
        "account_id": st.text(min_size=1, max_size=3),
        "model": st.just("m"),
    },
    optional={
        "asn": st.one_of(st.integers(min_value=-5, max_value=2**64 - 1), st.floats(0, 9)),
        "country": st.text(max_size=3),
        "status": st.sampled_from(["ok", "error", "weird", ""]),
        "stream": st.one_of(st.booleans(), st.integers(0, 1)),
        "prompt": st.one_of(st.text(max_size=30), st.none()),
        "extra": _json_values,
    },
)


def test_an_integer_time_past_2_53_decodes_alike_on_both_paths() -> None:
    value = b'{"event_id": "0", "ts": 9007199254740993, "account_id": "0", "model": "m"}'
    fast, reference = decode_record(record(value)), _decode_slowly(record(value), math.inf)
    assert isinstance(fast, QueryEvent) and fast == reference  # found by the property below
    assert type(fast.ts) is float


@settings(max_examples=500)
@given(_valid_like.map(lambda v: json.dumps(v).encode()))  # json: integers past 64 bits too
def test_the_fast_path_accepts_only_what_the_schema_accepts(value: bytes) -> None:
    fast = decode_record(record(value))
    reference = _decode_slowly(record(value), math.inf)
    if isinstance(fast, QueryEvent):
        assert fast == reference  # same event, field for field
    else:
        assert isinstance(reference, DeadLetter) and reference.reason == fast.reason


def test_objects_nested_past_the_fast_parsers_recursion_limit_are_dead_lettered() -> None:
    # The poison pill: msgspec raised RecursionError, which stopped the worker for good.
    for depth in (50_000, 100_000):
        value = b'{"a":' * depth + b"1" + b"}" * depth
        letter = decode_record(RawRecord("q", 0, 0, None, value))
        assert isinstance(letter, DeadLetter) and letter.reason == "invalid_json"


def test_whatever_decoding_raises_dead_letters_the_record_with_the_class_only() -> None:
    # A value of a type no source produces makes both parsers raise their own errors.
    letter = decode_record(RawRecord("q", 0, 0, None, None))  # type: ignore[arg-type]
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.error) == ("undecodable", "AttributeError")
    assert letter.detail == "AttributeError while decoding"


def test_a_far_future_ts_is_described_within_the_detail_limit() -> None:
    letter = decode_record(
        RawRecord("q", 0, 0, None, b'{"event_id":"e","ts":1e308,"account_id":"a","model":"m"}'),
        not_after=1.0,
    )
    assert isinstance(letter, DeadLetter) and letter.reason == "ts_in_future"
    assert len(letter.detail) <= 300
