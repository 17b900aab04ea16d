"""Intent and capability tags per request, from transparent, configurable patterns and,
when enabled, a learned model whose tags are OR-ed with theirs (``intent_model``).

A tag is a bit in a small integer. ``reasoning`` is the strong form (asking for the
internal reasoning itself); ``stepwise`` is the weak form every benchmark uses
("think step by step") and is never counted as harvesting on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

try:  # the stdlib's regex parser (3.11+), only to read a pattern's required literals
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]
except ImportError:  # a private module: without it there are no needles, every pattern is searched
    _parser = None  # type: ignore[assignment]

TAGS: Final = ("reasoning", "stepwise", "rubric", "rewrite", "coding", "tool_use")
BIT: Final = {name: 1 << i for i, name in enumerate(TAGS)}
HARVEST_TAGS: Final = ("reasoning", "rubric", "rewrite", "coding", "tool_use")
HARVEST_MASK: Final = sum(BIT[t] for t in HARVEST_TAGS)
HARVEST_NAMES = {
    "reasoning": "internal-reasoning elicitation",
    "rubric": "rubric grading",
    "rewrite": "censorship-safe rewrites",
    "coding": "agentic coding",
    "tool_use": "tool use",
}
_ESCAPES = re.compile(r"\\.")
_UPPER_OUTSIDE_ESCAPES = re.compile(r"[A-Z]")


class TagModel(Protocol):
    """Tags learned from text: the bits of ``TAGS`` for each lower-cased prompt of a batch."""

    def tags(self, lowered: Sequence[str]) -> list[int]: ...


class IntentTagger:
    """Compiled patterns per tag, matched against lower-cased text; a request with tool
    definitions is tagged ``tool_use``. ``model``, if given, tags whole batches beside them
    (``detector.features.request.extract_batch`` OR-s its bits in;
    ``detector.features.intent_model.tagger`` builds both from the settings).

    >>> tagger = IntentTagger({"rubric": [r"\\brubric\\b"], "stepwise": [r"step by step"]})
    >>> names(tagger.tag("Grade it against this rubric", tools=0))
    ['rubric']
    >>> names(tagger.tag("hello", tools=2))
    ['tool_use']
    """

    def __init__(
        self, patterns: Mapping[str, Sequence[str]], model: TagModel | None = None
    ) -> None:
        unknown = set(patterns) - set(TAGS)
        if unknown:
            raise ValueError(f"unknown intent tag(s) {sorted(unknown)}; known: {', '.join(TAGS)}")
        for tag, pats in patterns.items():
            for pattern in pats:
                if _UPPER_OUTSIDE_ESCAPES.search(_ESCAPES.sub("", pattern)):
                    raise ValueError(
                        f"intent pattern {pattern!r} ({tag}): patterns match lower-cased text, write them in lower case"
                    )
        # Each pattern on its own, over the text lower-cased once (cheaper than IGNORECASE): a
        # pattern that opens with a literal keeps the regex engine's literal scan, which an
        # alternation loses. Searched only if the text contains one of the pattern's
        # ``needles``: most prompts match no pattern, and ``str in`` is far cheaper than a search.
        self._compiled = [
            (BIT[tag], [(needles(p), re.compile(p)) for p in pats])
            for tag, pats in patterns.items()
            if pats
        ]
        self.model = model

    def tag(self, text: str, tools: int) -> int:
        return self.tag_lowered(text.lower(), tools)

    def tag_lowered_plain(self, lowered: str, tools: int) -> int:
        """The definition of ``tag_lowered``: every pattern searched, no needles."""
        bits = BIT["tool_use"] if tools > 0 else 0
        for bit, patterns in self._compiled:
            if any(pattern.search(lowered) for _, pattern in patterns):
                bits |= bit
        return bits

    def tag_lowered(self, lowered: str, tools: int) -> int:
        """``tag`` of text that is already lower-cased (feature extraction lowers it once):
        ``tag_lowered_plain``, with a pattern searched only if one of its needles is in the text."""
        bits = BIT["tool_use"] if tools > 0 else 0
        for bit, patterns in self._compiled:
            if bits & bit:
                continue
            for candidates, pattern in patterns:
                for needle in candidates:
                    if needle in lowered:
                        if pattern.search(lowered):
                            bits |= bit
                        break
                if bits & bit:
                    break
        return bits


def needles(pattern: str) -> tuple[str, ...]:
    """Strings one of which is in every match of ``pattern``; ``("",)`` (in every text) if
    none of at least 3 characters can be read off it.

    >>> needles(r"\\bgrader?\\b"), needles("(?:write|output) the patch"), needles("(?:show|tell) me")
    (('grade',), (' the patch',), ('show', 'tell'))
    >>> needles("(?i)rubric"), needles("a.b")
    (('',), ('',))
    """
    if _parser is None:
        return ("",)
    parsed = _parser.parse(pattern)
    if parsed.state.flags & re.IGNORECASE:  # a literal would match other cases too
        return ("",)
    return _best(_required(parsed)) or ("",)


def _required(items: Iterable[tuple[Any, Any]]) -> list[tuple[str, ...]]:
    """Alternative sets of literals a match of the parsed ``items`` must contain (each set:
    one of its strings), from literal runs, plain groups, repeats of at least one and
    alternations; anything else (classes, assertions, flags, optional parts) is skipped."""
    found: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, av in items:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        if run:
            found.append(("".join(run),))
            run = []
        if op is sre.SUBPATTERN and not av[1] and not av[2]:  # a group without flag changes
            found += _required(av[3])
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
            found += _required(av[2])
        elif op is sre.BRANCH:
            alternatives = [_best(_required(alternative)) for alternative in av[1]]
            if all(alternatives):
                found.append(tuple(n for alternative in alternatives for n in alternative))
    if run:
        found.append(("".join(run),))
    return found


def _best(found: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The set whose shortest string is longest (the fewest false hits); () if under 3 characters."""
    best = max(found, key=lambda strings: min(map(len, strings)), default=())
    return best if best and min(map(len, best)) >= 3 else ()


def names(bits: int) -> list[str]:
    return [t for t in TAGS if bits & BIT[t]]
