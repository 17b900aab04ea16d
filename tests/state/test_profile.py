"""The behaviour profile: shares, template chains, hour-of-day flatness, packing."""

from __future__ import annotations

import math

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from detector.config import FeatureSettings
from detector.events import QueryEvent
from detector.features import extract
from detector.features.intent import IntentTagger
from detector.state.profile import (
    HOUR_CAP,
    HOURS,
    Profile,
    add_event,
    behaviour_of,
    flatness,
)

TAGGER = IntentTagger({"rubric": [r"\brubric\b"]})


def _feat(i: int, prompt: str, step_s: float = 60.0, **kw) -> object:
    event = QueryEvent(f"e{i}", 1000.0 + step_s * i, "a", "m", prompt=prompt, **kw)
    return extract(event, FeatureSettings(), TAGGER)


def _run(prompts: list[str], **kw) -> Profile:
    profile = Profile()
    for i, p in enumerate(prompts, start=1):
        add_event(profile, _feat(i, p, **kw), i, 60.0 if i > 1 else None, 50, 20, 8)
    return profile


def test_templated_prompts_form_a_chain() -> None:
    prompts = [
        f"Score answer {i} against the rubric: correctness, clarity, completeness, tone."
        for i in range(30)
    ]
    p = behaviour_of(
        _run(prompts, max_tokens=100, output_tokens=100, stream=False, temperature=0.0)
    )
    assert p["dup"] > 0.9 and p["template_chain_max"] == 29 and p["templates_seen"] == 1
    assert p["rubric"] == 1.0 and p["harvest"] == 1.0
    assert p["at_limit"] == 1.0 and p["stream_off"] == 1.0 and p["fixed_temperature"] > 0.9


def test_diverse_prompts_do_not() -> None:
    prompts = [
        "what is the capital of peru", "write a haiku about autumn leaves", "how do I boil an egg",
        "explain quantum tunnelling simply", "best way to learn the guitar as an adult",
        "translate good morning into german", "why do cats purr when they are content",
    ]  # fmt: skip
    p = behaviour_of(_run(prompts, stream=True))
    assert p["dup"] < 0.3 and p["harvest"] == 0.0 and p["stream_off"] == 0.0


def test_shares_forget_old_behaviour() -> None:
    profile = _run(
        ["Grade it by the rubric, item 1"] * 20
        + [f"unrelated question number {w}" for w in "abcdefghij" * 20]
    )
    assert behaviour_of(profile)["rubric"] < 0.1


def test_round_the_clock_is_flat() -> None:
    profile = Profile()
    for i in range(48):
        add_event(profile, _feat(i, "x", step_s=3600.0), i + 1, 3600.0, 50, 20, 8)
    assert behaviour_of(profile)["hour_flatness"] > 0.99


def test_to_list_round_trip() -> None:
    profile = _run(
        [f"Score answer {i} by the rubric" for i in range(5)] + ["something else entirely"]
    )
    again = Profile.from_list(msgpack.unpackb(msgpack.packb(profile.to_list())))
    assert again == profile
    assert behaviour_of(again) == behaviour_of(profile)
    assert len(msgpack.packb(profile.to_list())) < 400


def _entropy_share(hours: list[int]) -> float:
    total = sum(hours)
    if total == 0:
        return 0.0
    entropy = -sum(h / total * math.log(h / total) for h in hours if h)
    return min(1.0, max(0.0, entropy / math.log(HOURS)))


# Up to the cap, and past it (a count this version never writes: the exact formula then).
@given(st.lists(st.integers(0, HOUR_CAP + 50), min_size=HOURS, max_size=HOURS))
def test_flatness_is_the_normalised_entropy_of_the_hours(hours: list[int]) -> None:
    assert math.isclose(flatness(hours), _entropy_share(hours), abs_tol=1e-9)


@given(st.lists(st.integers(0, 1000), max_size=12))
def test_top_template_share_counts_each_template_once(counts: list[int]) -> None:
    profile = Profile(templates=[[i + 1, n] for i, n in enumerate(counts)])
    expected = (max(counts) + 1) / (sum(counts) + len(counts)) if counts else 0.0
    assert behaviour_of(profile)["top_template_share"] == expected
