"""Prompt normalisation and SimHash fingerprints, on crafted texts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from detector.features.text import MAX_TOKENS, hamming, normalise, simhash

TEMPLATE = (
    "You are a strict grader. Score the answer below from 1 to 10 against this rubric: correctness, "
    "completeness, clarity. Justify each criterion. Answer #{n}: {s}"
)


def test_slot_values_are_masked() -> None:
    assert normalise("Ticket 4521 from `user_77` said \"hello there\" at 10:45") == [
        "ticket", "0", "from", "0", "said", "0", "at", "0",
    ]  # fmt: skip


def test_same_template_different_slots_are_near_duplicates() -> None:
    a = simhash(normalise(TEMPLATE.format(n=12, s="The list is sorted in place.")))
    b = simhash(normalise(TEMPLATE.format(n=98765, s="Each key must be hashable.")))
    assert hamming(a, b) <= 20


def test_unrelated_prompts_are_far_apart() -> None:
    a = simhash(normalise("What is a good recipe for lentil soup with cumin and lemon?"))
    b = simhash(
        normalise("Explain how TCP congestion control reacts to packet loss on long links.")
    )
    assert hamming(a, b) > 20


def test_empty_text_has_no_fingerprint() -> None:
    assert simhash(normalise("")) == 0
    assert simhash(normalise("42 17")) != 0  # masked numbers still make a (weak) fingerprint


def test_work_is_bounded() -> None:
    assert len(normalise("word " * 10_000)) == MAX_TOKENS


@given(st.text(max_size=400))
def test_fingerprint_is_a_64_bit_deterministic_value(text: str) -> None:
    fp = simhash(normalise(text))
    assert 0 <= fp < 2**64
    assert fp == simhash(normalise(text))
