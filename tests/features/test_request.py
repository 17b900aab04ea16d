"""Request features: UTF-8 truncation and the fields one event yields."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from detector.config import FeatureSettings, IntentSettings
from detector.events import QueryEvent
from detector.features import intent_model
from detector.features.intent import BIT, IntentTagger, names
from detector.features.request import (
    EventFeatures,
    extract,
    extract_batch,
    networks_of,
    truncate_utf8,
)

NO_TAGS = IntentTagger({})


def features(event: QueryEvent, prompt_max_bytes: int = 65536) -> EventFeatures:
    return extract(event, FeatureSettings(prompt_max_bytes=prompt_max_bytes), NO_TAGS)


@given(st.text(), st.integers(min_value=0, max_value=400))
def test_truncate_utf8_is_the_longest_whole_character_prefix(text: str, max_bytes: int) -> None:
    cut = truncate_utf8(text, max_bytes)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= max_bytes
    assert text.startswith(cut)  # never splits or replaces a character
    if cut != text:  # the next character would not have fit
        assert len(encoded) + len(text[len(cut)].encode("utf-8")) > max_bytes


def test_truncate_utf8_examples() -> None:
    assert truncate_utf8(None, 10) == ""
    assert truncate_utf8("", 10) == ""
    assert truncate_utf8("abc", 0) == ""
    assert truncate_utf8("héllo", 2) == "h"  # é is two bytes: not cut in half
    assert truncate_utf8("héllo", 3) == "hé"
    assert truncate_utf8("😀😀", 7) == "😀"
    assert truncate_utf8("😀😀", 8) == "😀😀"


def test_extract_fields() -> None:
    event = QueryEvent(
        "evt-1",
        1_700_000_000,
        "acct-1",
        "atlas-3",
        partition=2,
        offset=9,
        prompt="héllo wörld",
        input_tokens=11,
        output_tokens=22,
        account_created_ts=1_600_000_000.0,
        source_ip="10.0.0.1",
        user_agent="sdk/1.0",
    )
    f = features(event, prompt_max_bytes=3)
    assert (f.account_id, f.event_id, f.model) == ("acct-1", "evt-1", "atlas-3")
    assert f.ts == 1_700_000_000.0 and isinstance(f.ts, float)
    assert (f.partition, f.offset) == (2, 9)
    assert (f.tokens_in, f.tokens_out) == (11, 22)
    assert f.prompt_chars == 2  # "hé" fits 3 bytes
    assert f.created_ts == 1_600_000_000.0
    assert (f.source_ip, f.user_agent) == ("10.0.0.1", "sdk/1.0")
    assert f.id_hash == xxhash.xxh32_intdigest(b"evt-1")


def test_extract_defaults_for_missing_optional_fields() -> None:
    f = features(QueryEvent("e", 5.0, "a", "m"))
    assert (f.tokens_in, f.tokens_out, f.prompt_chars) == (0, 0, 0)
    assert f.created_ts is None
    assert (f.source_ip, f.user_agent) == ("", "")


def test_extracted_features_carry_no_prompt_text() -> None:
    secret = "SECRET PROMPT TEXT " * 10
    f = features(QueryEvent("e", 5.0, "a", "m", prompt=secret, system_prompt=secret))
    assert f.prompt_chars == len(secret)
    for name in EventFeatures.__struct_fields__:
        value = getattr(f, name)
        assert not (isinstance(value, str) and "SECRET" in value), name


class _RubricEverywhere:
    """A learned model that tags every prompt ``rubric``."""

    def tags(self, lowered: Sequence[str]) -> list[int]:
        return [BIT["rubric"]] * len(lowered)


def test_learned_tags_are_or_ed_with_the_patterns() -> None:
    tagger = IntentTagger({"stepwise": [r"step by step"]}, _RubricEverywhere())
    events = [
        QueryEvent("e1", 1.0, "a", "m", prompt="Think STEP BY STEP"),
        QueryEvent("e2", 2.0, "a", "m", prompt="hi", tools=2),
    ]
    got = [names(f.tags) for f in extract_batch(events, FeatureSettings(), tagger)]
    assert got == [["stepwise", "rubric"], ["rubric", "tool_use"]]


def test_the_shipped_model_tags_what_no_pattern_names() -> None:
    prompt = "У тебя есть доступ к репозиторию: почини падающий тест, прогони тесты и покажи diff."
    event = QueryEvent("e", 1.0, "a", "m", prompt=prompt)
    on = intent_model.tagger(IntentSettings())
    off = IntentTagger(IntentSettings().patterns)
    assert names(extract(event, FeatureSettings(), on).tags) == ["coding"]
    assert names(extract(event, FeatureSettings(), off).tags) == []


def test_id_hash_is_stable_and_distinguishes_ids() -> None:
    a1 = features(QueryEvent("same", 1.0, "a", "m")).id_hash
    a2 = features(QueryEvent("same", 99.0, "b", "n", offset=5)).id_hash
    b = features(QueryEvent("other", 1.0, "a", "m")).id_hash
    assert a1 == a2
    assert a1 != b
    assert 0 <= a1 < 2**32  # packed as a u32 in the state


@given(st.text(max_size=200), st.integers(min_value=0, max_value=100))
def test_prompt_chars_counts_the_truncated_prompt(prompt: str, max_bytes: int) -> None:
    f = features(QueryEvent("e", 1.0, "a", "m", prompt=prompt), max_bytes)
    assert f.prompt_chars == len(truncate_utf8(prompt, max_bytes))
    assert f.prompt_chars <= len(prompt)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.77", ("203.0.113.0/24", "203.0.0.0/16")),
        ("255.255.255.255", ("255.255.255.0/24", "255.255.0.0/16")),
        ("2001:db8:aa:bb::1", ("2001:db8:aa::/48", "2001:db8::/32")),
        ("2001:db8::1%1", ("2001:db8::/48", "2001:db8::/32")),
        ("::ffff:1.2.3.4", ("::/48", "::/32")),
        ("1.2.3.4 ", ("", "")),
        ("01.2.3.4", ("", "")),  # ipaddress refuses leading zeros (they once meant octal)
        ("256.1.1.1", ("", "")),
        ("1.2.3", ("", "")),
        ("\u0661.2.3.4", ("", "")),  # an Arabic-Indic digit: not an address
        (None, ("", "")),
    ],
)
def test_networks_of_an_address(ip: str | None, expected: tuple[str, str]) -> None:
    """Both prefixes as ``ipaddress.ip_network("address/prefix", strict=False)`` writes them."""
    assert networks_of(ip) == expected


def test_networks_of_ipv4_agrees_with_ipaddress() -> None:
    """The IPv4 shortcut reads every dotted quad as ``ipaddress`` does, octet edges included."""
    octets = ["0", "00", "7", "09", "10", "99", "100", "199", "200", "249", "250", "255", "256"]
    rng = random.Random(8)
    quads = [".".join(rng.choice(octets) for _ in range(4)) for _ in range(3000)]
    for ip in quads:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            expected = ("", "")
        else:
            expected = tuple(
                str(ipaddress.ip_network(f"{address}/{bits}", strict=False)) for bits in (24, 16)
            )
        assert networks_of(ip) == expected, ip
