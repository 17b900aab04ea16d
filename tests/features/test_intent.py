"""Intent tags from the default patterns, on crafted prompts, and their precision on simulator prompts."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.config import Settings
from detector.features.intent import HARVEST_MASK, IntentTagger, names, needles
from detector_lab.sim import text

PATTERNS = [p for pats in Settings().intent.patterns.values() for p in pats]
TAGGER = IntentTagger(Settings().intent.patterns)
# Text around, between and inside matches of the default patterns.
PIECES = st.one_of(st.text(max_size=30), *(st.from_regex(p, fullmatch=True) for p in PATTERNS))


@pytest.fixture(scope="module")
def tagger() -> IntentTagger:
    return IntentTagger(Settings().intent.patterns)


@pytest.mark.parametrize(
    ("prompt", "tools", "expected"),
    [
        (
            "Before answering, articulate the complete internal reasoning behind it.",
            0,
            ["reasoning"],
        ),
        ("Let's think step by step.", 0, ["stepwise"]),
        ("Grade this essay against the rubric below.", 0, ["rubric"]),
        ("Rephrase this request into a policy-compliant version.", 0, ["rewrite"]),
        (
            "You are a coding agent: make the failing test pass and output a unified diff.",
            0,
            ["coding"],
        ),
        ("What's the weather in Paris?", 3, ["tool_use"]),
        ("Can you recommend a novel about the sea?", 0, []),
    ],
)
def test_crafted_prompts(
    tagger: IntentTagger, prompt: str, tools: int, expected: list[str]
) -> None:
    assert names(tagger.tag(prompt, tools)) == expected


def test_benchmark_phrasing_is_not_harvesting(tagger: IntentTagger) -> None:
    assert not tagger.tag("Question 12: what is 7 * 8? Let's think step by step.", 0) & HARVEST_MASK


def test_unknown_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown intent tag"):
        IntentTagger({"jailbreak": ["x"]})


def test_precision_and_recall_on_simulator_prompts(tagger: IntentTagger) -> None:
    """The patterns and the simulator's templates come from one hand: this guards regressions,
    it is not evidence of precision on real traffic."""
    rng = random.Random(5)
    honest_hits = sum(
        bool(tagger.tag(text.honest_prompt(rng), 0) & HARVEST_MASK) for _ in range(3000)
    )
    assert honest_hits / 3000 < 0.01
    for capability, tag in [("reasoning", "reasoning"), ("rubric", "rubric"), ("censorship_rewrite", "rewrite"),
                            ("agentic_coding", "coding"), ("tool_use", "tool_use")]:  # fmt: skip
        hits = sum(
            tag in names(tagger.tag(text.harvest_prompt(rng, capability), 0)) for _ in range(300)
        )
        assert hits / 300 > 0.9, capability


def test_needle_prefilter_tags_as_plain_search(tagger: IntentTagger) -> None:
    """On simulator prompts, searching only texts that contain a pattern's needles changes no
    tag; and ``tag_lowered_plain`` is the plain search."""
    patterns = {
        tag: [re.compile(p) for p in pats] for tag, pats in Settings().intent.patterns.items()
    }
    rng = random.Random(11)
    prompts = [text.honest_prompt(rng) for _ in range(500)]
    for capability in ("reasoning", "rubric", "censorship_rewrite", "agentic_coding", "tool_use"):
        prompts += [text.harvest_prompt(rng, capability) for _ in range(100)]
    prompts += ["Show me your full reasoning", "GRADER: rate it", "upgrade the grader", ""]
    for prompt in prompts:
        plain = [t for t, ps in patterns.items() if any(p.search(prompt.lower()) for p in ps)]
        assert names(tagger.tag(prompt, 0)) == plain, prompt
        assert names(tagger.tag_lowered_plain(prompt.lower(), 0)) == plain, prompt


@given(st.lists(PIECES, max_size=6).map(" ".join), st.integers(0, 2))
def test_tags_are_those_of_the_plain_search(prompt: str, tools: int) -> None:
    lowered = prompt.lower()
    assert TAGGER.tag_lowered(lowered, tools) == TAGGER.tag_lowered_plain(lowered, tools)


@given(st.data())
def test_every_match_of_a_pattern_contains_one_of_its_needles(data: st.DataObject) -> None:
    pattern = data.draw(st.sampled_from(PATTERNS))
    match = data.draw(st.from_regex(pattern, fullmatch=True))
    assert any(needle in match for needle in needles(pattern)), (pattern, match)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("internal reasoning", ("internal reasoning",)),
        (r"\brubric\b", ("rubric",)),
        ("chain[- ]of[- ]thought", ("thought",)),
        ("(?:rewrite|rephrase) .{0,80}safe", ("write", "phrase")),  # the parser factors out "re"
        ("(?:ab|xyz)+ q", ("",)),  # "ab" is too short to be worth a check
        ("(?:abc)+ q", ("abc",)),
        ("(?:abc)? q", ("",)),  # optional: not required
        ("(?i:abc)", ("",)),  # a case-insensitive part is no literal
        ("(?=abc)x", ("",)),
    ],
)
def test_needles(pattern: str, expected: tuple[str, ...]) -> None:
    assert needles(pattern) == expected
