"""Findings: lazily written reasons read as the tuple they stand for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from detector.detectors import Reasons


@given(st.lists(st.text(max_size=20), max_size=5).map(tuple), st.integers(-6, 6))
def test_reasons_read_as_the_tuple_written(text: tuple[str, ...], i: int) -> None:
    calls = []

    def write() -> tuple[str, ...]:
        calls.append(1)
        return text

    reasons = Reasons(write)
    assert not calls  # nothing is written until read
    assert list(reasons) == list(text) and len(reasons) == len(text)
    assert reasons == text and text == reasons and reasons == Reasons(lambda: text)
    assert reasons[i:] == text[i:] and repr(reasons) == repr(text)
    if -len(text) <= i < len(text):
        assert reasons[i] == text[i]
    assert len(calls) == 1  # written once
