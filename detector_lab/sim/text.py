"""Prompt text for the simulator.

Honest prompts are built from real English prose that ships with CPython (the
``pydoc_data`` help topics: ~465,000 characters of the language reference), cut
into sentences and asked about in many phrasings and lengths. Campaign prompts are
templates with slots, the way automated harvesting fills them.

Independence (issue 29): a simulator whose campaign prompts use the detector's own
phrases, and whose honest text has one source, measures the detector's assumptions. So,
beside the original English banks (kept byte-for-byte for the default arguments):

- ``phrases/*.yaml``: phrase banks per language (``LANGUAGES``), written natively, for every
  campaign capability, every honest request kind (``HONEST_KINDS``), system prompts and
  follow-ups; ``shared.yaml`` holds language-free material (code, tools, coding-agent
  client system prompts).
- ``source=``: honest prose from several unrelated corpora that ship with installed
  packages (``HONEST_SOURCES``), plus a hand-written bank of everyday requests.
- ``half=``: every bank, corpus and word list is split in two disjoint halves by the CRC-32
  of each item, so thresholds tuned on ``"tune"`` text are reported on unseen ``"test"``
  text. The split depends only on an item's own text: an item shared by two banks is in
  the same half in both, and adding an item never moves another.
- ``paraphrase=True``: campaign prompts composed from parts (opening, framing, context,
  instruction, constraint, slot text, closing), each with many alternatives and lexicon
  slots, in one of several orders: no shared opening, no shared SimHash neighbourhood.

Slots in YAML text are ``{name}``: a special value (``n``, ``a``-``e`` numbers, ``w`` an
identifier, ``s`` a capability's ``slots`` text, ``t`` prose, ``tools``, and the
translation job's ``src_lang``/``tgt_lang``/``source_text``), else a list of the same
section, of the language's ``lexicon`` or of ``shared.yaml`` (code and tool output, used
literally). A name that resolves to nothing stays as written: UI strings keep their own
placeholders (``{count}``) that way.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import random
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

import yaml

Half = Literal["tune", "test"]
LANGUAGES: Final = ("en", "zh", "ru", "es")
CAPABILITIES: Final = ("reasoning", "rubric", "censorship_rewrite", "agentic_coding", "tool_use")
HONEST_KINDS: Final[tuple[str, ...]] = (
    "benchmark_reasoning", "tutoring", "red_team", "translation", "essay_grading",
    "coding_agent", "chat",
)  # fmt: skip
WORKLOADS: Final = (
    "general", "coding_assistant", "essay_grading", "coding_agent_client", "tutoring",
    "red_team", "translation",
)  # fmt: skip

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")

# How people actually wrap a piece of text into a request.
_HONEST_FRAMES = (
    "{t}",
    "Can you explain this to me? {t}",
    'What does this mean: "{t}"',
    "Summarize in one paragraph:\n\n{t}",
    "I'm reading the docs and got stuck here. {t} Why is that?",
    "Rewrite this so a beginner understands it: {t}",
    "Translate into French, please: {t}",
    "Is this correct? {t}",
    "give me an example of this {t}",
    "{t}\n\nCan you show me a short code example?",
    "My colleague says: {t} Do you agree?",
    "Turn this into three bullet points: {t}",
    "Explain like I'm five: {t}",
    "Help me write a unit test for the behaviour described here: {t}",
    "Quick question - {t} what's the catch?",
    "Write an email to my team summarising this: {t}",
    "Compare this with how Java does it: {t}",
    "What's a common mistake related to this? {t}",
    "{t} How would you phrase that more simply?",
    "For my study notes, paraphrase: {t}",
)
_CHAT_FOLLOWUPS = (
    "thanks! and what about {w}?", "ok, can you make it shorter", "why?", "Can you give another example?",
    "that didn't work, I get an error about {w}", "what if I use {w} instead?", "perfect, thank you",
)  # fmt: skip


# Standard-library modules whose docstrings add everyday vocabulary to the language reference.
_DOC_MODULES = (
    "argparse", "asyncio", "bisect", "calendar", "collections", "csv", "datetime", "decimal",
    "email.message", "fractions", "functools", "heapq", "http.client", "itertools", "json",
    "logging", "os", "pathlib", "random", "shutil", "sqlite3", "statistics", "string",
    "subprocess", "tarfile", "textwrap", "threading", "unittest", "urllib.parse", "zipfile",
)  # fmt: skip


def _documents() -> list[str]:
    from pydoc_data.topics import topics

    docs = [topics[name] for name in sorted(topics)]
    for module_name in _DOC_MODULES:
        module = importlib.import_module(module_name)
        docs.append(inspect.getdoc(module) or "")
        for name in sorted(dir(module)):
            if not name.startswith("_"):
                docs.append(inspect.getdoc(getattr(module, name)) or "")
    return docs


@cache
def corpus() -> tuple[str, ...]:
    """Sentences of real prose, 30-300 characters, deduplicated, in a stable order."""
    seen: dict[str, None] = {}
    for doc in _documents():
        text = re.sub(r"\s+", " ", doc)
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if 30 <= len(sentence) <= 300 and sentence.count("*") < 2 and "====" not in sentence:
                seen.setdefault(sentence, None)
    return tuple(seen)


@cache
def _words() -> tuple[str, ...]:
    words = {w for s in corpus() for w in re.findall(r"[a-z_]{5,14}", s)}
    return tuple(sorted(words))


def honest_prompt(
    rng: random.Random,
    max_sentences: int = 4,
    *,
    half: Half | None = None,
    source: str | None = None,
    language: str = "en",
) -> str:
    """One honest request: a run of real sentences in one of many phrasings.

    ``source`` names a corpus of ``HONEST_SOURCES`` (None: the CPython docs in English; in
    another language, half of the time that language's everyday requests, else the docs
    asked about in that language). ``"everyday"`` is a hand-written request, no corpus.
    """
    _check(language=language, half=half)
    if half is None and language == "en" and source in (None, "pydoc"):
        sentences = corpus()
        start = rng.randrange(len(sentences))
        n = 1 + min(int(rng.expovariate(0.8)), max_sentences - 1)
        text = " ".join(sentences[start : start + n])
        return rng.choice(_HONEST_FRAMES).format(t=text)
    if source is None:
        source = "pydoc" if language == "en" or rng.random() < 0.5 else "everyday"
    if source not in HONEST_SOURCES:
        raise ValueError(f"unknown or unavailable honest source {source!r}: {HONEST_SOURCES}")
    if source == "everyday":
        return honest_request(rng, "chat", half=half, language=language)
    sentences = source_sentences(source, half)
    start = rng.randrange(len(sentences))
    n = 1 + min(int(rng.expovariate(0.8)), max_sentences - 1)
    text = " ".join(sentences[start : start + n])
    frame = rng.choice(_bank(language, ("honest", "frames"), half))
    return _fill(rng, frame, _Scope(language, half, (), {"t": text}))


def followup(rng: random.Random, *, half: Half | None = None, language: str = "en") -> str:
    """A later turn of a chat: short, often referring back."""
    _check(language=language, half=half)
    if half is None and language == "en":
        return rng.choice(_CHAT_FOLLOWUPS).format(w=rng.choice(_words()))
    bank = _bank(language, ("honest", "followups"), half)
    return _fill(rng, rng.choice(bank), _Scope(language, half, ()))


def batch_item(rng: random.Random, template: str, *, half: Half | None = None) -> str:
    """An enterprise batch job: a fixed instruction with varying real slot text."""
    return template.format(t=honest_prompt(rng, max_sentences=2, half=half), n=rng.randrange(10**6))


_WORKLOAD_SYSTEM = {
    "general": (
        "You are a helpful assistant for {w} customers.", "You summarise support tickets about {w}.",
        "You are {w}Bot. Answer briefly and politely.", "Extract structured fields about {w} as JSON.",
    ),
    "coding_assistant": (
        "You are an AI pair programmer inside the user's IDE. You can read files, run tests and propose edits.",
        "You are a coding agent for the {w} repository. Use the tools to inspect code before changing it.",
    ),
    "essay_grading": (
        "You are a teaching assistant. Grade essays fairly against the teacher's rubric and explain the grade.",
    ),
}  # fmt: skip
_CODING_TASKS = (
    "The test test_{w} is failing after my change, can you find out why? Context: {s}",
    "Refactor `{w}` so it is easier to read, and keep the tests passing. Notes: {s}",
    "Write the patch for this bug and show it as a unified diff: {s}",
    "Add type hints to the {w} module. {s}",
    "Why does this raise an error? {s}",
    "Explain what `{w}` does and suggest a better name.",
)  # fmt: skip
_GRADING_TASKS = (
    "Grade this essay against the rubric (thesis, evidence, organisation, style; 0-4 each) and give "
    "feedback for the student. Essay: {e}",
    "Using the class rubric, score the student's answer and explain which criteria it misses: {e}",
)


def system_prompt(
    rng: random.Random, workload: str, *, half: Half | None = None, language: str = "en"
) -> str:
    """The system prompt of an honest product of ``workload`` (see ``WORKLOADS``).

    ``coding_agent_client`` is the fixed system prompt of a popular open-source coding-agent
    client: the same string for every account and language (rng unused), as thousands of
    honest developers send it.
    """
    _check(language=language, half=half)
    if workload == "coding_agent_client":
        clients = _shared()["coding_agent_client"]
        return clients.of(half)[0]
    if half is None and language == "en" and workload in _WORKLOAD_SYSTEM:
        return rng.choice(_WORKLOAD_SYSTEM[workload]).format(w=word(rng))
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: {WORKLOADS}")
    bank = _bank(language, ("system", workload), half)
    return _fill(rng, rng.choice(bank), _Scope(language, half, ()))


def workload_prompt(
    rng: random.Random, workload: str, *, half: Half | None = None, language: str = "en"
) -> str:
    """An honest product's request: general chat, coding-assistant tasks, or essays to grade."""
    if half is not None or language != "en":
        kind = {"coding_assistant": "coding_agent", "essay_grading": "essay_grading"}
        if workload in kind:
            return honest_request(rng, kind[workload], half=half, language=language)
        if workload in HONEST_KINDS:
            return honest_request(rng, workload, half=half, language=language)
        return honest_prompt(rng, half=half, language=language)
    if workload == "coding_assistant":
        sentences = corpus()
        return rng.choice(_CODING_TASKS).format(
            w=word(rng), s=sentences[rng.randrange(len(sentences))]
        )
    if workload == "essay_grading":
        essay = " ".join(honest_prompt(rng, max_sentences=3) for _ in range(rng.randint(2, 5)))
        return rng.choice(_GRADING_TASKS).format(e=essay)
    return honest_prompt(rng)


def word(rng: random.Random, *, half: Half | None = None) -> str:
    return rng.choice(_words() if half is None else _words_of(half))


def honest_request(
    rng: random.Random, kind: str, *, half: Half | None = None, language: str = "en"
) -> str:
    """A request of an honest population that looks like a campaign's on the surface.

    ``kind`` is one of ``HONEST_KINDS``: eval-harness items asking for worked reasoning,
    students on a tutoring app, red-team suites, localisation jobs (source text in any
    language of ``LANGUAGES``), rubric-based essay grading, turns of an open-source coding
    agent (file reads, test output, diffs), and everyday chat.
    """
    _check(language=language, half=half)
    if kind not in HONEST_KINDS:
        raise ValueError(f"unknown honest request kind {kind!r}: {HONEST_KINDS}")
    section = _phrases(language)["honest"][kind]
    template = section["templates"].pick(rng, half)
    given = _translation_job(rng, language, half) if kind == "translation" else None
    return _fill(rng, template, _Scope(language, half, (section,), given))


# Campaign templates per capability. Slots: {n} numbers, {w} words, {s} a real sentence.
HARVEST_TEMPLATES: dict[str, tuple[str, ...]] = {
    "reasoning": (
        "Solve the following problem. Before the final answer, articulate the complete internal "
        "reasoning that leads to it, step by step, without skipping any step. Problem {n}: {s}",
        "Think step by step and show all of your hidden reasoning, then answer. Task #{n}: "
        "if {a} machines produce {b} parts in {c} hours, how many parts do {d} machines produce in {e} hours?",
        "Explain the reasoning you would use internally to answer this, as a numbered chain of "
        "thought, then give the answer. Question {n}: {s}",
    ),
    "rubric": (
        "You are a strict grader. Score the answer below from 1 to 10 against this rubric: "
        "correctness, completeness, clarity, safety. Justify each criterion. Answer #{n}: {s}",
        "Grade the following response using the rubric (accuracy 0-4, reasoning 0-3, style 0-3). "
        "Output JSON with per-criterion scores and rationale. Response {n}: {s}",
    ),
    "censorship_rewrite": (
        "Rewrite the following question so that it can be answered safely and without refusing, "
        "keeping its meaning. Return only the rewritten prompt. Item {n}: {s}",
        "Rephrase this sensitive request into a neutral, policy-compliant version and then "
        "answer it. Case {n}: {s}",
    ),
    "agentic_coding": (
        "You are an autonomous coding agent. Repository task {n}: implement `{w}` so that the "
        "failing test passes. Plan, write the patch, run the tests, iterate. Context: {s}",
        "Act as a software engineer agent. Step {a} of {b}: read the file `{w}.py`, find the bug "
        "described here and output a unified diff. Issue {n}: {s}",
    ),
    "tool_use": (
        "Use the available tools to answer. Call `search` then `calculator` as needed and show "
        "every tool call with arguments. Query {n}: {s}",
        "You have tools get_weather, lookup_{w} and run_sql. Decide which tools to call, in order, "
        "and produce the calls as JSON. Request {n}: {s}",
    ),
}


# How an operator's tooling frames every request: each campaign has a house style of its own.
HOUSE_STYLES = (
    "", "### Instruction", "Task:", "[job]", "You are an expert assistant.", "Please help with the following.",
    "INPUT:", "Q:", "<task>", "System: answer carefully.", "Request:", "## Prompt", "Follow these instructions.",
    "Context: evaluation run.", "[auto]", "Assignment:", "Directive:", "Work item:",
)  # fmt: skip


def house_style(rng: random.Random, *, half: Half | None = None) -> str:
    return rng.choice(_halve(HOUSE_STYLES, half))


def harvest_prompt(
    rng: random.Random,
    capability: str,
    template_index: int | None = None,
    style: str = "",
    *,
    half: Half | None = None,
    language: str = "en",
    paraphrase: bool = False,
) -> str:
    """One campaign request for ``capability`` (one of ``CAPABILITIES``).

    Templated (the default): ``template_index`` picks the campaign's template from the bank
    (of ``half``, if given), so one campaign repeats one template with new slot text.
    ``paraphrase=True`` composes every prompt anew from parts (``template_index`` is then
    unused): the variant that defeats near-duplicate and template-chain signals.
    """
    _check(language=language, half=half)
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}: {CAPABILITIES}")
    prefix = f"{style} " if style else ""
    if half is None and language == "en" and not paraphrase:
        templates = HARVEST_TEMPLATES[capability]
        template = (
            templates[template_index % len(templates)]
            if template_index is not None
            else rng.choice(templates)
        )
        sentences = corpus()
        return prefix + template.format(
            n=rng.randrange(10**6),
            s=sentences[rng.randrange(len(sentences))],
            w=word(rng),
            a=rng.randint(2, 9),
            b=rng.randint(2, 9),
            c=rng.randint(2, 9),
            d=rng.randint(2, 9),
            e=rng.randint(2, 9),
        )
    section = _phrases(language)["campaign"][capability]
    scope = _Scope(language, half, (section,))
    if paraphrase:
        return prefix + _paraphrase(rng, capability, scope)
    templates = harvest_templates(capability, half=half, language=language)
    template = (
        templates[template_index % len(templates)]
        if template_index is not None
        else rng.choice(templates)
    )
    return prefix + _fill(rng, template, scope)


def harvest_templates(
    capability: str, *, half: Half | None = None, language: str = "en"
) -> tuple[str, ...]:
    """The templated-campaign bank of ``capability``: English adds the original templates."""
    return _bank(language, ("campaign", capability, "templates"), half)


# Paraphrased prompts: the opening always leads (its lexicon slots make openings unique); the
# other parts follow in one of these orders. "payload" is a framing sentence and the slot text.
_ORDERS: Final = (
    ("payload", "context", "instruction", "constraint"),
    ("context", "instruction", "constraint", "payload"),
    ("instruction", "payload", "context", "constraint"),
    ("context", "payload", "constraint", "instruction"),
    ("instruction", "constraint", "context", "payload"),
    ("context", "payload", "instruction"),
)
_SEPARATORS: Final = ("{space}", "{space}", "\n", "\n\n")


def _paraphrase(rng: random.Random, capability: str, scope: _Scope) -> str:
    campaign = _phrases(scope.language)["campaign"]
    section = campaign[capability]

    def part(name: str) -> str:
        # A capability's own alternatives are added to the language's generic ones.
        bank = campaign[name].of(scope.half) if isinstance(campaign.get(name), Bank) else ()
        bank += section[name].of(scope.half) if name in section else ()
        return _fill(rng, rng.choice(bank), scope).strip() if bank else ""

    space = "" if scope.language == "zh" else " "  # Chinese runs sentences together
    pieces = [part("lead") + space + part("opening")]
    for name in rng.choice(_ORDERS):
        if name == "payload":
            slot = scope.special(rng, "s") or ""
            pieces.append(part("framing") + rng.choice(("\n", space, "\n\n")) + slot)
        else:
            pieces.append(part(name))
    if rng.random() < 0.7:
        pieces.append(part("closing"))
    out = pieces[0]
    for piece in pieces[1:]:
        if piece:
            out += rng.choice(_SEPARATORS).format(space=space) + piece
    return out.strip()


# ---------------------------------------------------------------------------------------
# Halves


def half_of(item: str) -> Half:
    """The half an item of any bank belongs to: its own text decides, nothing else."""
    return "tune" if zlib.crc32(item.encode("utf-8")) % 2 == 0 else "test"


def _halve(items: tuple[str, ...], half: Half | None) -> tuple[str, ...]:
    return items if half is None else tuple(i for i in items if half_of(i) == half)


@dataclass(frozen=True)
class Bank:
    """One list of alternatives, with its two halves precomputed."""

    items: tuple[str, ...]
    tune: tuple[str, ...]
    test: tuple[str, ...]

    @classmethod
    def of_items(cls, items: tuple[str, ...]) -> Bank:
        items = tuple(dict.fromkeys(items))  # a duplicate would only weigh an item twice
        return cls(items, _halve(items, "tune"), _halve(items, "test"))

    def of(self, half: Half | None) -> tuple[str, ...]:
        return self.items if half is None else self.tune if half == "tune" else self.test

    def pick(self, rng: random.Random, half: Half | None) -> str:
        return rng.choice(self.of(half))


def _check(*, language: str, half: Half | None) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: {LANGUAGES}")
    if half not in (None, "tune", "test"):
        raise ValueError(f"half must be None, 'tune' or 'test', not {half!r}")


# ---------------------------------------------------------------------------------------
# Phrase banks (YAML, shipped as package data)


def _banked(node: Any) -> Any:
    """The YAML tree with every list of strings turned into a ``Bank``."""
    if isinstance(node, dict):
        return {key: _banked(value) for key, value in node.items()}
    if isinstance(node, list):
        if not all(isinstance(item, str) for item in node):
            raise TypeError(f"a bank holds strings only: {node[:3]}")
        return Bank.of_items(tuple(node))
    return node


def _read(name: str) -> dict[str, Any]:
    path = resources.files("detector_lab.sim").joinpath("phrases", f"{name}.yaml")
    tree = _banked(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert isinstance(tree, dict)
    return tree


@cache
def _phrases(language: str) -> dict[str, Any]:
    return _read(language)


@cache
def _shared() -> dict[str, Any]:
    return _read("shared")


def _legacy_en() -> dict[tuple[str, ...], tuple[str, ...]]:
    """The original English tuples, keyed by the YAML bank they join: the default arguments
    draw from them alone, anything else from them and the YAML items as one bank."""
    legacy: dict[tuple[str, ...], tuple[str, ...]] = {
        ("honest", "frames"): _HONEST_FRAMES,
        ("honest", "followups"): _CHAT_FOLLOWUPS,
    }
    legacy |= {("campaign", k, "templates"): v for k, v in HARVEST_TEMPLATES.items()}
    legacy |= {("system", k): v for k, v in _WORKLOAD_SYSTEM.items()}
    return legacy


@cache
def _bank(language: str, path: tuple[str, ...], half: Half | None) -> tuple[str, ...]:
    """The bank at ``path`` of a language's YAML, joined in English to the original tuple."""
    node: Any = _phrases(language)
    for key in path:
        node = node[key]
    legacy = _legacy_en().get(path, ()) if language == "en" else ()
    return Bank.of_items(legacy + node.items).of(half)


def phrase_banks() -> dict[str, Bank]:
    """Every bank in effect, by path (``"en/campaign/reasoning/instruction"``): the YAML
    banks (in English joined to the original tuples), the house styles, the word list and
    the corpora. For tests and reports."""
    out: dict[str, Bank] = {}

    def walk(language: str, path: tuple[str, ...], node: Any) -> None:
        if isinstance(node, Bank):
            items = _bank(language, path, None) if language in LANGUAGES else node.items
            out["/".join((language, *path))] = Bank.of_items(items)
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(language, (*path, key), value)

    for language in LANGUAGES:
        walk(language, (), _phrases(language))
    walk("shared", (), _shared())
    out["legacy/house_styles"] = Bank.of_items(HOUSE_STYLES)
    out["legacy/words"] = Bank.of_items(_words())
    for source in HONEST_SOURCES:
        if source != "everyday":
            out[f"corpus/{source}"] = Bank.of_items(source_sentences(source, None))
    return out


@cache
def _words_of(half: Half) -> tuple[str, ...]:
    return _halve(_words(), half)


# ---------------------------------------------------------------------------------------
# Slot filling

_SLOT: Final = re.compile(r"\{(\w+)\}")
_NUMBER_SLOTS: Final = {"a": (2, 60), "b": (2, 60), "c": (2, 30), "d": (2, 30), "e": (2, 12)}
_MAX_DEPTH: Final = 4  # bank items may hold slots; a cycle would otherwise recurse forever


@dataclass(frozen=True)
class _Scope:
    """Where a slot's value comes from: given values, the sections' own lists, the
    language's lexicon, the shared lists, then the generated specials."""

    language: str
    half: Half | None
    sections: tuple[Mapping[str, Any], ...]
    given: Mapping[str, str] | None = None

    def lookup(self, rng: random.Random, name: str, depth: int) -> str | None:
        if self.given and name in self.given:
            return self.given[name]
        for node in (*self.sections, _phrases(self.language)["lexicon"], _shared()):
            bank = node.get(name)
            if isinstance(bank, Bank):
                item = bank.pick(rng, self.half)
                # Shared lists are code and tool output: literal, braces and all.
                return item if node is _shared() else _fill(rng, item, self, depth + 1)
        return self.special(rng, name, depth)

    def special(self, rng: random.Random, name: str, depth: int = 0) -> str | None:
        make = _SPECIALS.get(name)
        return None if make is None else make(rng, self, depth)


def _fill(rng: random.Random, template: str, scope: _Scope, depth: int = 0) -> str:
    if depth > _MAX_DEPTH:
        raise RecursionError(f"slots nested deeper than {_MAX_DEPTH}: {template[:80]!r}")

    def value(match: re.Match[str]) -> str:
        found = scope.lookup(rng, match.group(1), depth)
        return match.group(0) if found is None else found

    return _SLOT.sub(value, template)


def _capability_slot(rng: random.Random, scope: _Scope, depth: int) -> str | None:
    # The payload of a campaign prompt: the first section's "slots" bank.
    for section in scope.sections:
        bank = section.get("slots")
        if isinstance(bank, Bank):
            return _fill(rng, bank.pick(rng, scope.half), scope, depth + 1)
    return None


def _tools(rng: random.Random, scope: _Scope, depth: int) -> str:
    signatures = _shared()["tool_signatures"].of(scope.half)
    return ", ".join(rng.sample(signatures, min(len(signatures), rng.randint(2, 4))))


def _translation_job(rng: random.Random, language: str, half: Half | None) -> dict[str, str]:
    """A localisation job: a source text in any language, to any other language, named in
    the request's language."""
    names = _phrases(language)["lexicon"]["language_names"]
    source = rng.choice(LANGUAGES)
    target = rng.choice([code for code in names if code != source])
    text = _phrases(source)["honest"]["translation"]["strings"].pick(rng, half)
    return {"src_lang": names[source], "tgt_lang": names[target], "source_text": text}


_Special = Callable[[random.Random, _Scope, int], str | None]


def _number(lo: int, hi: int) -> _Special:
    return lambda rng, scope, depth: str(rng.randint(lo, hi))


_SPECIALS: Final[dict[str, _Special]] = {
    "n": lambda rng, scope, depth: str(rng.randrange(10**6)),
    **{name: _number(lo, hi) for name, (lo, hi) in _NUMBER_SLOTS.items()},
    "w": lambda rng, scope, depth: word(rng, half=scope.half),
    "s": _capability_slot,
    "tools": _tools,
}


# ---------------------------------------------------------------------------------------
# Honest corpora from installed packages

# Modules per corpus: unrelated subjects and authors, all offline. ``pydoc`` is ``corpus()``.
_SOURCE_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "email_http": (
        "email.utils", "email.headerregistry", "email.policy", "email.parser", "email.mime.text",
        "mailbox", "smtplib", "imaplib", "poplib", "http.cookies", "http.cookiejar",
        "http.server", "urllib.request", "ftplib", "mimetypes",
    ),
    "numpy": (
        "numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.ma", "numpy.polynomial",
        "numpy.lib.stride_tricks",
    ),
    "river": (
        "river.anomaly", "river.cluster", "river.compose", "river.drift", "river.ensemble",
        "river.feature_extraction", "river.forest", "river.linear_model", "river.metrics",
        "river.naive_bayes", "river.neighbors", "river.optim", "river.preprocessing",
        "river.stats", "river.time_series", "river.tree", "river.imblearn", "river.proba",
    ),
    "matplotlib": (
        "matplotlib.axes", "matplotlib.figure", "matplotlib.colors", "matplotlib.ticker",
        "matplotlib.patches", "matplotlib.lines", "matplotlib.text", "matplotlib.dates",
        "matplotlib.legend", "matplotlib.animation",
    ),
}  # fmt: skip


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Optional packages missing: their corpus is simply not offered.
HONEST_SOURCES: Final[tuple[str, ...]] = (
    "pydoc",
    *(name for name, modules in _SOURCE_MODULES.items() if _available(modules[0].split(".")[0])),
    "everyday",
)

# numpydoc sections that are not prose: code, citations, cross-references, and the
# "name : type" lists of parameters and attributes.
_SKIPPED_SECTIONS: Final = frozenset({
    "examples", "references", "see also", "methods", "parameters", "other parameters",
    "returns", "yields", "raises", "warns", "attributes", "properties",
})  # fmt: skip
_SIGNATURE: Final = re.compile(r"^\s*[\w.]+\(.*\)\s*(->.*)?$")
_SECTION: Final = re.compile(r"^([A-Za-z][A-Za-z ]*)\n[-=]{3,}\s*$", re.MULTILINE)
_MARKUP: Final = re.compile(r":[a-z:]+:`~?([^`]+)`|``([^`]+)``|`([^`]+)`")


def _prose(doc: str) -> str:
    """A docstring's prose: sections other than examples and references, code lines and
    reST roles dropped."""
    pieces = _SECTION.split(doc)
    kept = [pieces[0]]
    for header, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if header.strip().lower() not in _SKIPPED_SECTIONS:
            kept.append(body)
    lines = [
        line
        for line in "\n".join(kept).splitlines()
        if not line.lstrip().startswith((">>>", "...", "..", "|", "+-", "http"))
        and not _SIGNATURE.match(line)
    ]
    return _MARKUP.sub(lambda m: next(g for g in m.groups() if g), "\n".join(lines))


def _own_doc(obj: object) -> str:
    # Not ``inspect.getdoc``: it falls back to a base class's docstring (dict's, object's),
    # which every corpus would then share.
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _module_docs(module_name: str) -> Iterator[str]:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # an optional package that fails to import is simply absent
        return
    yield _own_doc(module)
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if not str(getattr(obj, "__module__", "") or "").startswith(module_name):
            continue  # imported from elsewhere: another corpus's prose, or none
        yield _own_doc(obj)
        if inspect.isclass(obj):
            for member, value in sorted(vars(obj).items()):
                if not member.startswith("_"):
                    yield _own_doc(value)


@cache
def source_sentences(source: str, half: Half | None = None) -> tuple[str, ...]:
    """Sentences of a corpus of ``HONEST_SOURCES`` (not ``"everyday"``), deduplicated."""
    if source == "pydoc":
        return _halve(corpus(), half)
    if half is not None:
        return _halve(source_sentences(source), half)
    seen: dict[str, None] = {}
    for module_name in _SOURCE_MODULES[source]:
        for doc in _module_docs(module_name):
            text = re.sub(r"\s+", " ", _prose(doc))
            for sentence in _SENTENCE_END.split(text):
                sentence = sentence.strip()
                if (
                    30 <= len(sentence) <= 300
                    and sentence.count("*") < 2
                    and not re.search(r"====|----|>>>|\\", sentence)
                ):
                    seen.setdefault(sentence, None)
    return tuple(seen)
