"""Prompt text for the simulator.

Honest prompts are built from real English prose that ships with CPython (the
``pydoc_data`` help topics: ~465,000 characters of the language reference), cut
into sentences and asked about in many phrasings and lengths. Campaign prompts are
templates with slots, the way automated harvesting fills them.
"""

from __future__ import annotations

import random
import re
from functools import cache

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
    import importlib
    import inspect
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


def honest_prompt(rng: random.Random, max_sentences: int = 4) -> str:
    """One honest request: a run of real sentences in one of many phrasings."""
    sentences = corpus()
    start = rng.randrange(len(sentences))
    n = 1 + min(int(rng.expovariate(0.8)), max_sentences - 1)
    text = " ".join(sentences[start : start + n])
    return rng.choice(_HONEST_FRAMES).format(t=text)


def followup(rng: random.Random) -> str:
    return rng.choice(_CHAT_FOLLOWUPS).format(w=rng.choice(_words()))


def batch_item(rng: random.Random, template: str) -> str:
    """An enterprise batch job: a fixed instruction with varying real slot text."""
    return template.format(t=honest_prompt(rng, max_sentences=2), n=rng.randrange(10**6))


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


def system_prompt(rng: random.Random, workload: str) -> str:
    return rng.choice(_WORKLOAD_SYSTEM[workload]).format(w=word(rng))


def workload_prompt(rng: random.Random, workload: str) -> str:
    """An honest product's request: general chat, coding-assistant tasks, or essays to grade."""
    if workload == "coding_assistant":
        sentences = corpus()
        return rng.choice(_CODING_TASKS).format(
            w=word(rng), s=sentences[rng.randrange(len(sentences))]
        )
    if workload == "essay_grading":
        essay = " ".join(honest_prompt(rng, max_sentences=3) for _ in range(rng.randint(2, 5)))
        return rng.choice(_GRADING_TASKS).format(e=essay)
    return honest_prompt(rng)


def word(rng: random.Random) -> str:
    return rng.choice(_words())


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


def house_style(rng: random.Random) -> str:
    return rng.choice(HOUSE_STYLES)


def harvest_prompt(
    rng: random.Random, capability: str, template_index: int | None = None, style: str = ""
) -> str:
    templates = HARVEST_TEMPLATES[capability]
    template = (
        templates[template_index % len(templates)]
        if template_index is not None
        else rng.choice(templates)
    )
    sentences = corpus()
    return (f"{style} " if style else "") + template.format(
        n=rng.randrange(10**6),
        s=sentences[rng.randrange(len(sentences))],
        w=word(rng),
        a=rng.randint(2, 9),
        b=rng.randint(2, 9),
        c=rng.randint(2, 9),
        d=rng.randint(2, 9),
        e=rng.randint(2, 9),
    )
