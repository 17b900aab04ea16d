"""Intent and capability tags per request, from transparent, configurable patterns.

A tag is a bit in a small integer. ``reasoning`` is the strong form (asking for the
internal reasoning itself); ``stepwise`` is the weak form every benchmark uses
("think step by step") and is never counted as harvesting on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

TAGS = ("reasoning", "stepwise", "rubric", "rewrite", "coding", "tool_use")
BIT = {name: 1 << i for i, name in enumerate(TAGS)}
HARVEST_TAGS = ("reasoning", "rubric", "rewrite", "coding", "tool_use")
HARVEST_MASK = sum(BIT[t] for t in HARVEST_TAGS)
HARVEST_NAMES = {
    "reasoning": "internal-reasoning elicitation",
    "rubric": "rubric grading",
    "rewrite": "censorship-safe rewrites",
    "coding": "agentic coding",
    "tool_use": "tool use",
}
_ESCAPES = re.compile(r"\\.")
_UPPER_OUTSIDE_ESCAPES = re.compile(r"[A-Z]")


class IntentTagger:
    """Compiled patterns per tag, matched against lower-cased text; a request with tool
    definitions is tagged ``tool_use``.

    >>> tagger = IntentTagger({"rubric": [r"\\brubric\\b"], "stepwise": [r"step by step"]})
    >>> names(tagger.tag("Grade it against this rubric", tools=0))
    ['rubric']
    >>> names(tagger.tag("hello", tools=2))
    ['tool_use']
    """

    def __init__(self, patterns: Mapping[str, Sequence[str]]) -> None:
        unknown = set(patterns) - set(TAGS)
        if unknown:
            raise ValueError(f"unknown intent tag(s) {sorted(unknown)}; known: {', '.join(TAGS)}")
        for tag, pats in patterns.items():
            for pattern in pats:
                if _UPPER_OUTSIDE_ESCAPES.search(_ESCAPES.sub("", pattern)):
                    raise ValueError(
                        f"intent pattern {pattern!r} ({tag}): patterns match lower-cased text, write them in lower case"
                    )
        # Each pattern on its own over the text lower-cased once: a pattern that opens with a
        # literal gets the regex engine's fast literal scan, which an alternation loses (and
        # lower-casing once is ~3x faster than IGNORECASE).
        self._compiled = [
            (BIT[tag], [re.compile(p) for p in pats]) for tag, pats in patterns.items() if pats
        ]

    def tag(self, text: str, tools: int) -> int:
        bits = BIT["tool_use"] if tools > 0 else 0
        lowered = text.lower()
        for bit, patterns in self._compiled:
            if not bits & bit and any(p.search(lowered) for p in patterns):
                bits |= bit
        return bits


def names(bits: int) -> list[str]:
    return [t for t in TAGS if bits & BIT[t]]
