"""Prompt normalisation and SimHash fingerprints, on crafted texts."""

from __future__ import annotations

import itertools
import random
import re

import xxhash
from hypothesis import given
from hypothesis import strategies as st

from detector.features.text import (
    _SLOTS,
    MAX_TOKENS,
    SLOTS_PLAIN,
    hamming,
    normalise,
    simhash,
    simhashes,
)

TEMPLATE = (
    "You are a strict grader. Score the answer below from 1 to 10 against this rubric: correctness, "
    "completeness, clarity. Justify each criterion. Answer #{n}: {s}"
)


def test_slot_values_are_masked() -> None:
    assert normalise("Ticket 4521 from `user_77` said \"hello there\" at 10:45") == [
        b"ticket", b"0", b"from", b"0", b"said", b"0", b"at", b"0",
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


def test_batched_fingerprints_equal_one_at_a_time() -> None:
    docs = [
        normalise("Grade answer 17 against the rubric: correctness, clarity."),
        [],
        [b"single"],
        normalise("Explain how tides work, step by step."),
        [b"a", b"b"],
        normalise("word " * 400),  # capped at MAX_TOKENS
    ]
    assert simhashes(docs) == [_reference_simhash(d) for d in docs]
    assert [simhash(d) for d in docs] == simhashes(docs)
    assert simhashes([]) == []


def test_slot_pattern_matches_its_plain_form() -> None:
    """``_SLOTS`` is ``SLOTS_PLAIN`` rewritten for speed: the same substitutions on any text."""
    plain = re.compile(SLOTS_PLAIN)
    rng = random.Random(3)
    alphabet = 'abcdefxyz_0123456789`". ,:\u0663\u00e9A'  # \u0663: an Arabic-Indic digit
    texts = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(20_000)
    ]
    texts += ["0xdeadbeef12", 'xyzabcdef12 `a1` "b 2" 10:45,3.5', "`" + "a" * 90 + "`"]
    for t in texts:
        assert _SLOTS.sub(" 0 ", t) == plain.sub(" 0 ", t), t
        assert normalise(t) == _reference_normalise(t), t


def _reference_normalise(text: str) -> list[bytes]:
    """``normalise`` by its definition: mask ``SLOTS_PLAIN``, then find ``[a-z_]+|0``."""
    masked = re.sub(SLOTS_PLAIN, " 0 ", text.lower())
    return [t.encode() for t in re.findall(r"[a-z_]+|0", masked)][:MAX_TOKENS]


@given(st.text(max_size=300))
def test_normalise_follows_its_definition_on_any_text(text: str) -> None:
    """Hex ids are looked for with a byte scan, tokens found by byte translation: the same."""
    assert normalise(text) == _reference_normalise(text)


@given(st.text(alphabet='0123456789abcdefgx _.`"\u0663\u00e9', max_size=120))
def test_normalise_follows_its_definition_around_hex_ids(text: str) -> None:
    assert normalise(text) == _reference_normalise(text)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_normalise_follows_its_definition_on_ascii_text(text: str) -> None:
    """ASCII text is masked by patterns of their own (digits spelled ``0-9``): the same."""
    assert normalise(text) == _reference_normalise(text)


def _reference_simhash(tokens: list[bytes]) -> int:
    """The SimHash of ``simhashes``, one bit at a time."""
    if not tokens:
        return 0
    words = [xxhash.xxh64_intdigest(t) for t in tokens]
    if len(words) == 1:
        return words[0]
    mask = (1 << 64) - 1
    grams = [
        ((a * 0x9E3779B97F4A7C15) & mask) ^ (((b << 31) | (b >> 33)) & mask)
        for a, b in itertools.pairwise(words)
    ]
    return sum(1 << k for k in range(64) if 2 * sum(g >> k & 1 for g in grams) > len(grams))


def test_simhashes_match_the_reference_on_short_and_long_documents() -> None:
    """Up to 256 tokens the bit votes are summed 8 lanes at a time; beyond, one at a time."""
    rng = random.Random(8)
    vocabulary = [f"w{i}".encode() for i in range(50)]
    for longest in (256, 400):
        docs = [[rng.choice(vocabulary) for _ in range(rng.randint(0, longest))] for _ in range(40)]
        docs += [[rng.choice(vocabulary) for _ in range(longest)]]
        assert simhashes(docs) == [_reference_simhash(d) for d in docs]
