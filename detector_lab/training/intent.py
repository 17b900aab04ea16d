"""The intent model of ``detector.features.intent_model``: a labelled corpus from the
simulator, training, per-tag thresholds, and a measurement on text it never saw.

    python -m detector_lab.training.intent --out detector/features/intent_model.npz

Steps, in order:

1. ``corpus(half)``: prompts of every campaign capability (templated and paraphrased) and of
   every honest request kind, everyday prose, chat follow-ups and batch-job items, in every
   language of the simulator, drawn from one phrase half only. Each is labelled with the tags
   of the capability its generator meant (``CAMPAIGN_TAGS``, ``HONEST_TAGS``): the same
   meaning as the pattern tags, so both feed one ``harvest`` share.
2. ``choose_thresholds``: on the tune corpus, a model fitted on three random quarters scores
   the fourth, four times; per tag, the threshold with the best F1 on those out-of-fold
   logits. Prompts the model did not learn decide where a tag starts, not the ones it did.
3. ``fit`` on the whole tune corpus: one-vs-rest logistic regression over hashed character
   n-grams (``ngram_buckets``), mini-batch gradient descent with Adagrad steps and L2, seeded.
4. ``measure`` on the test corpus (the other phrase half: no phrasing, slot text, word, style
   or batch template of it was seen in training or threshold choice), beside the patterns
   and the union of both, and ``cost`` per prompt; ``write_report`` writes both down.
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from detector.config import Settings
from detector.features.intent import BIT, HARVEST_MASK, HARVEST_TAGS, TAGS, IntentTagger
from detector.features.intent_model import DEFAULT_BITS, NGRAMS, IntentModel, ngram_buckets
from detector_lab.sim import text
from detector_lab.sim.suites import load_suite

# The tags of what each generator asks for: the capability, not the sender's intent. An IDE
# user's request is coding and an essay grader's is rubric grading, as a campaign's are; the
# group judge tells them apart by shares and manner. ``stepwise`` is any request for worked
# reasoning, the strong form (``reasoning``) included.
CAMPAIGN_TAGS: Final = {
    "reasoning": ("reasoning", "stepwise"),
    "rubric": ("rubric",),
    "censorship_rewrite": ("rewrite",),
    "agentic_coding": ("coding",),
    "tool_use": ("tool_use",),
}
HONEST_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "benchmark_reasoning": ("stepwise",),
    "tutoring": ("stepwise",),
    "essay_grading": ("rubric",),
    "coding_agent": ("coding",),
    "red_team": (),  # attacks the model should refuse, not requests to reword them
    "translation": (),  # a faithful rendering in another language, not a censorship-safe one
    "chat": (),
}
STYLE_SHARE: Final = 0.5  # prompts opened by a house style, honest and campaign alike: no cue
MAX_CHARS: Final = 512
FOLDS: Final = 4
SEED: Final = 20260
TEST_SEED: Final = 20261
Labels = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Example:
    prompt: str
    language: str
    source: str  # "campaign/<capability>" or "honest/<kind>"
    tags: int


def bits_of(tags: Sequence[str]) -> int:
    return sum(BIT[t] for t in tags)


def corpus(half: text.Half, per_source: int, seed: int) -> list[Example]:
    """Labelled prompts of one phrase half: ``per_source`` per language from each generator
    (each campaign capability templated and paraphrased, each honest kind), twice that of
    everyday prose, and English batch-job items from the half's suite; without duplicates."""
    rng = random.Random(seed)
    batch_templates = _batch_templates(half)

    def styled(prompt: str) -> str:
        style = text.house_style(rng, half=half) if rng.random() < STYLE_SHARE else ""
        return f"{style} {prompt}" if style else prompt

    out: dict[str, Example] = {}  # by prompt: a prompt drawn twice keeps its first label

    def add(prompt: str, language: str, source: str, tags: Sequence[str]) -> None:
        out.setdefault(prompt, Example(prompt, language, source, bits_of(tags)))

    for lang in text.LANGUAGES:
        for capability, tags in CAMPAIGN_TAGS.items():
            for paraphrase in (False, True):
                for _ in range(per_source):
                    prompt = text.harvest_prompt(
                        rng, capability, half=half, language=lang, paraphrase=paraphrase
                    )
                    add(styled(prompt), lang, f"campaign/{capability}", tags)
        for kind, tags in HONEST_TAGS.items():
            for _ in range(per_source):
                prompt = text.honest_request(rng, kind, half=half, language=lang)
                add(styled(prompt), lang, f"honest/{kind}", tags)
        for _ in range(2 * per_source):
            source = rng.choice(text.HONEST_SOURCES)
            prompt = text.honest_prompt(rng, half=half, source=source, language=lang)
            add(prompt, lang, "honest/prose", ())
        for _ in range(per_source):
            add(text.followup(rng, half=half, language=lang), lang, "honest/followup", ())
        if lang == "en":  # the suites' batch jobs write English
            for _ in range(per_source):
                prompt = text.batch_item(rng, rng.choice(batch_templates), half=half)
                add(prompt, lang, "honest/batch", ())
    return list(out.values())


def _batch_templates(half: text.Half) -> list[str]:
    """The batch-job templates of the half's suite (``config/suites/<half>.yaml``)."""
    out = []
    for family in load_suite(half).honest:
        templates = family.params.get("templates", ())
        if family.kind == "enterprise_batch" and isinstance(templates, tuple):
            out += [str(t) for t in templates]
    return out


def label_matrix(examples: Sequence[Example]) -> Labels:
    """One row per example, one column per tag of ``TAGS``: 1.0 where the label has it."""
    tags = np.array([e.tags for e in examples], dtype=np.int64)
    return np.stack([(tags & BIT[t]) > 0 for t in TAGS], axis=1).astype(np.float64)


@dataclass(frozen=True, eq=False)  # arrays: no field-wise ==
class Features:
    """Hashed n-grams of many prompts, row by row: the buckets, each row's offsets into
    them (rows + 1), and each row's weight 1/sqrt(n-grams)."""

    indices: npt.NDArray[np.int64]
    indptr: npt.NDArray[np.int64]
    norm: npt.NDArray[np.float64]

    def rows(
        self, rows: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The buckets of ``rows``, one after the other, and where each row's run starts."""
        begin, end = self.indptr[rows], self.indptr[rows + 1]
        lengths = end - begin
        starts = np.cumsum(lengths) - lengths
        # Position k of the result is bucket begin[row] + (k - starts[row]) of the corpus.
        gather = np.repeat(begin - starts, lengths) + np.arange(int(lengths.sum()))
        return self.indices[gather], starts


def featurise(prompts: Sequence[str], bits: int, max_chars: int, chunk: int = 4096) -> Features:
    """``Features`` of the prompts (lower-cased here), ``chunk`` at a time."""
    indices, counts = [], []
    for at in range(0, len(prompts), chunk):
        buckets, starts = ngram_buckets(
            [p.lower() for p in prompts[at : at + chunk]], bits, max_chars
        )
        by_position = buckets.T  # a row's n-grams by position, then length: contiguous per prompt
        indices.append(by_position[by_position != 1 << bits])
        lengths = np.diff(starts)
        counts.append(sum(np.maximum(lengths - n + 1, 0) for n in NGRAMS))
    n = np.concatenate(counts)  # at least 1 (``IntentModel.logits``)
    return Features(np.concatenate(indices), np.concatenate(([0], np.cumsum(n))), 1 / np.sqrt(n))


@dataclass(frozen=True)
class Training:
    """How ``fit`` learns: Adagrad steps of ``learning_rate`` on mini-batches of
    ``batch_size``, with L2 of ``l2`` on the rows a batch touches, ``epochs`` passes."""

    bits: int = DEFAULT_BITS
    max_chars: int = MAX_CHARS
    epochs: int = 6
    batch_size: int = 256
    learning_rate: float = 0.5
    l2: float = 1e-4
    seed: int = SEED


def _logits(
    features: Features,
    rows: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64],
    bias: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    buckets, starts = features.rows(rows)
    sums = np.add.reduceat(np.take(weights, buckets, axis=0), starts, axis=0)
    return bias + sums * features.norm[rows][:, None], buckets, starts


def fit(
    features: Features, labels: Labels, training: Training
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Weights (2**bits rows and the zero row, one column per tag) and biases of a
    one-vs-rest logistic regression; the same for the same input."""
    rng = np.random.default_rng(training.seed)
    tags = labels.shape[1]
    weights = np.zeros(((1 << training.bits) + 1, tags))
    rate = labels.mean(axis=0).clip(1e-3, 1 - 1e-3)
    bias = np.log(rate / (1 - rate))  # the base rate: the weights learn only what text adds
    squares = np.full_like(weights, 1e-8)
    bias_squares = np.full(tags, 1e-8)
    n = len(labels)
    for _ in range(training.epochs):
        order = rng.permutation(n)
        for at in range(0, n, training.batch_size):
            rows = order[at : at + training.batch_size]
            z, buckets, starts = _logits(features, rows, weights, bias)
            error = (1 / (1 + np.exp(-z)) - labels[rows]) / len(rows)
            # Each n-gram's gradient is its row's error times the row's weight, summed per bucket.
            per_row = error * features.norm[rows][:, None]
            lengths = np.diff(np.append(starts, len(buckets)))
            touched, which = np.unique(buckets, return_inverse=True)
            row_of = np.repeat(np.arange(len(rows)), lengths)
            grad = training.l2 * weights[touched] + np.stack(
                [
                    np.bincount(which, weights=per_row[row_of, t], minlength=len(touched))
                    for t in range(tags)
                ],
                axis=1,
            )
            squares[touched] += grad**2
            weights[touched] -= training.learning_rate * grad / np.sqrt(squares[touched])
            bias_grad = error.sum(axis=0)
            bias_squares += bias_grad**2
            bias -= training.learning_rate * bias_grad / np.sqrt(bias_squares)
    weights[-1] = 0.0  # the row of n-grams that are not there
    return weights, bias


def logits_of(
    features: Features, weights: npt.NDArray[np.float64], bias: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    rows = np.arange(len(features.norm))
    return np.concatenate(
        [
            _logits(features, rows[at : at + 4096], weights, bias)[0]
            for at in range(0, len(rows), 4096)
        ]
    )


def best_f1_threshold(logits: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float:
    """The logit from which a tag is set that gives the best F1 on ``logits``: half-way
    between the lowest logit it tags and the next lower one; inf when there is no positive.

    >>> best_f1_threshold(np.array([3.0, 1.0, -1.0, -2.0]), np.array([True, True, False, False]))
    0.0
    """
    if not positive.any():
        return math.inf
    order = np.argsort(-logits, kind="stable")
    hits = np.cumsum(positive[order])
    f1 = 2 * hits / (np.arange(1, len(order) + 1) + positive.sum())
    best = int(np.argmax(f1))
    below = logits[order[best + 1]] if best + 1 < len(order) else logits[order[best]] - 1.0
    return float((logits[order[best]] + below) / 2)


def choose_thresholds(
    features: Features, labels: Labels, training: Training
) -> npt.NDArray[np.float64]:
    """Per tag, the best-F1 threshold on out-of-fold logits: ``FOLDS`` random folds of the
    corpus, each scored by a model fitted on the others."""
    fold = np.random.default_rng(training.seed).integers(0, FOLDS, len(labels))
    out_of_fold = np.zeros_like(labels)
    for k in range(FOLDS):
        held, kept = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        weights, bias = fit(_subset(features, kept), labels[kept], training)
        out_of_fold[held] = logits_of(_subset(features, held), weights, bias)
    return np.array(
        [best_f1_threshold(out_of_fold[:, t], labels[:, t] > 0) for t in range(len(TAGS))]
    )


def _subset(features: Features, rows: npt.NDArray[np.int64]) -> Features:
    indices, starts = features.rows(rows)
    return Features(indices, np.append(starts, len(indices)), features.norm[rows])


def train(examples: Sequence[Example], training: Training) -> IntentModel:
    """The model of ``examples`` (the tune corpus): thresholds from out-of-fold logits, then
    weights from all of it."""
    features = featurise([e.prompt for e in examples], training.bits, training.max_chars)
    labels = label_matrix(examples)
    thresholds = choose_thresholds(features, labels, training)
    weights, bias = fit(features, labels, training)
    return IntentModel(
        weights.astype(np.float32), bias.astype(np.float32), thresholds, training.max_chars
    )


# ---------------------------------------------------------------------------------------
# Measurement

METHODS: Final = ("model", "patterns", "union")
ALL: Final = "all"


@dataclass(frozen=True)
class Score:
    """Counts of one tag (or of any harvesting tag) for one method and language."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        return self.true_positives / max(1, self.true_positives + self.false_positives)

    @property
    def recall(self) -> float:
        return self.true_positives / max(1, self.true_positives + self.false_negatives)


def predictions(
    examples: Sequence[Example], model: IntentModel, tagger: IntentTagger
) -> dict[str, npt.NDArray[np.int64]]:
    """Each method's tag bits per example, from the prompt alone (no tool definitions)."""
    lowered = [e.prompt.lower() for e in examples]
    model_bits = np.concatenate(
        [
            np.array(model.tags(lowered[at : at + 1024]), dtype=np.int64)
            for at in range(0, len(lowered), 1024)
        ]
    )
    pattern_bits = np.array([tagger.tag_lowered(p, 0) for p in lowered], dtype=np.int64)
    return {"model": model_bits, "patterns": pattern_bits, "union": model_bits | pattern_bits}


def measure(
    examples: Sequence[Example], predicted: dict[str, npt.NDArray[np.int64]]
) -> dict[tuple[str, str, str], Score]:
    """Scores by (method, tag or "harvest", language or "all")."""
    truth = np.array([e.tags for e in examples], dtype=np.int64)
    languages = np.array([e.language for e in examples])
    out = {}
    for method, bits in predicted.items():
        for tag, mask in [*((t, BIT[t]) for t in TAGS), ("harvest", HARVEST_MASK)]:
            for language in (*text.LANGUAGES, ALL):
                rows = languages == language if language != ALL else np.ones(len(truth), dtype=bool)
                want, got = (truth[rows] & mask) > 0, (bits[rows] & mask) > 0
                out[method, tag, language] = Score(
                    int((want & got).sum()), int((~want & got).sum()), int((want & ~got).sum())
                )
    return out


def harvest_shares(
    examples: Sequence[Example], predicted: dict[str, npt.NDArray[np.int64]]
) -> dict[str, dict[str, float]]:
    """Per source (generator), the share of its prompts labelled harvesting and the share
    each method tags harvesting: what the group judge's background and groups are made of."""
    sources = np.array([e.source for e in examples])
    truth = np.array([e.tags for e in examples], dtype=np.int64)
    out = {}
    for source in sorted(set(sources)):
        rows = sources == source
        shares = {"label": float(((truth[rows] & HARVEST_MASK) > 0).mean())}
        shares |= {
            m: float(((bits[rows] & HARVEST_MASK) > 0).mean()) for m, bits in predicted.items()
        }
        out[source] = shares
    return out


@dataclass(frozen=True)
class Cost:
    chars: int
    batch_median_us: float  # per prompt, in batches of ``batch``
    batch_p99_us: float
    single_median_us: float  # one prompt per call
    single_p99_us: float
    patterns_median_us: float  # the pattern tagger on the same prompts, for comparison


def cost(
    prompts: Sequence[str],
    model: IntentModel,
    tagger: IntentTagger,
    lengths: Sequence[int] = (100, 300, 1000),
    batch: int = 256,
    repeats: int = 60,
) -> list[Cost]:
    """Microseconds per prompt of ``model.tags`` on lower-cased prompts of each length (made
    from ``prompts``, joined and cut), in batches as ``extract_batch`` calls it and alone."""
    joined = " ".join(p.lower() for p in prompts)
    out = []
    for chars in lengths:
        texts = [joined[(i * 7919) % (len(joined) - chars) :][:chars] for i in range(batch)]
        per_batch = _times(functools.partial(model.tags, texts), repeats, batch)
        single = _times(functools.partial(model.tags, texts[:1]), repeats * 20, 1)
        pattern = _times(functools.partial(_pattern_tags, tagger, texts), repeats, batch)
        out.append(
            Cost(
                chars,
                statistics.median(per_batch),
                _p99(per_batch),
                statistics.median(single),
                _p99(single),
                statistics.median(pattern),
            )
        )
    return out


def _pattern_tags(tagger: IntentTagger, lowered: Sequence[str]) -> list[int]:
    return [tagger.tag_lowered(t, 0) for t in lowered]


def _times(call: Callable[[], object], repeats: int, per: int) -> list[float]:
    call()  # warm
    out = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        out.append((time.perf_counter() - begin) * 1e6 / per)
    return out


def _p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]


# ---------------------------------------------------------------------------------------
# Report


def _pr(score: Score) -> str:
    return f"{score.precision:.3f} / {score.recall:.3f}"


def write_report(
    path: Path,
    tune: Sequence[Example],
    test: Sequence[Example],
    model: IntentModel,
    training: Training,
    scores: dict[tuple[str, str, str], Score],
    shares: dict[str, dict[str, float]],
    costs: list[Cost],
) -> None:
    names = [*TAGS, "harvest"]
    lines = [
        "# Intent model: measured on the test phrase half",
        "",
        "Generated by `python -m detector_lab.training.intent --out detector/features/intent_model.npz`"
        " (seeded: the same corpus, weights and numbers on every run). No prompt text is stored here.",
        "",
        "## What was measured",
        "",
        f"- **Model**: character {NGRAMS[0]}- to {NGRAMS[-1]}-grams of the lower-cased prompt (first"
        f" {model.max_chars} characters), hashed into 2^{model.bits} buckets, one-vs-rest logistic"
        f" regression per tag (Adagrad mini-batches of {training.batch_size}, {training.epochs} epochs,"
        f" L2 {training.l2:g}, seed {training.seed}), weights shipped as float16.",
        "- **Training data: the `tune` phrase half only.** The simulator splits every phrase bank,"
        " corpus, word list and house style into two disjoint halves by the CRC-32 of each item;"
        " the tune corpus is drawn from the tune half, in all four languages (en, es, ru, zh).",
        "- **Thresholds: chosen on tune only.** For each tag, the best-F1 threshold on out-of-fold"
        f" logits of the tune corpus ({FOLDS} random folds, each scored by a model fitted on the others);"
        " the shipped weights are then fitted on the whole tune corpus.",
        "- **Test data: the `test` phrase half**, drawn with another seed: phrasings, paraphrase"
        " parts, slot text, words, house styles and batch-job templates that neither training nor"
        " the thresholds saw. Nothing was chosen on it; these numbers are reported only.",
        "- **Labels**: the capability the generator meant, whoever sends it: campaign prompts"
        " carry their capability's tag (reasoning campaigns also `stepwise`); honest essay grading"
        " is `rubric`, honest coding-agent and IDE turns are `coding`, eval-harness and tutoring"
        " requests are `stepwise`; red-team probes, translation jobs, chat, prose, follow-ups and"
        " batch items have no tag. The group judge decides maliciousness from shares and manner.",
        "- **Patterns**: `intent.patterns` of `config/default.yaml` on the prompt alone (a request"
        " with tool definitions is also `tool_use` in production; the corpus has none).",
        "",
        "Thresholds (logit from which the model sets a tag): "
        + ", ".join(f"{t} {th:.2f}" for t, th in zip(TAGS, model.thresholds, strict=True))
        + ".",
        "",
        "| corpus | prompts | " + " | ".join(TAGS) + " |",
        "|---|---:|" + "---:|" * len(TAGS),
    ]
    for name, examples in (("tune", tune), ("test", test)):
        for language in text.LANGUAGES:
            of = [e for e in examples if e.language == language]
            lines.append(
                f"| {name} {language} | {len(of)} | "
                + " | ".join(str(sum(bool(e.tags & BIT[t]) for e in of)) for t in TAGS)
                + " |"
            )
    union, patterns = scores["union", "harvest", ALL], scores["patterns", "harvest", ALL]
    untagged = {
        s: v["union"] for s, v in shares.items() if s.startswith("honest/") and not v["label"]
    }
    worst = max(untagged, key=untagged.__getitem__)
    lines += [
        "",
        "## Summary",
        "",
        f"- The union (patterns OR model) tags {union.recall:.1%} of the test half's harvesting"
        f" prompts at precision {union.precision:.3f}; the patterns alone {patterns.recall:.1%}"
        f" at {patterns.precision:.3f}. It cannot lose a prompt the patterns tag.",
        f"- Honest requests that ask for no harvesting capability, tagged harvesting by the union:"
        f" at most {untagged[worst]:.1%} of a generator's prompts ({worst}).",
        "- The phrase banks are small (a handful of templates and parts per capability, language"
        " and half): the test half measures phrasings the model never saw, from the same"
        " simulator, not real traffic.",
    ]
    lines += [
        "",
        "## Test half, all languages: precision / recall",
        "",
        "`harvest` is any of " + ", ".join(HARVEST_TAGS) + ": the share the detectors use.",
        "",
        "| tag | model | patterns | union |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {tag} | " + " | ".join(_pr(scores[m, tag, ALL]) for m in METHODS) + " |"
        for tag in names
    ]
    lines += [
        "",
        "## Test half, per language: precision / recall",
        "",
        "| tag | language | model | patterns | union |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {tag} | {language} | "
        + " | ".join(_pr(scores[m, tag, language]) for m in METHODS)
        + " |"
        for tag in names
        for language in text.LANGUAGES
    ]
    lines += [
        "",
        "## Test half: share of each generator's prompts tagged harvesting",
        "",
        "| source | labelled | model | patterns | union |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {source} | " + " | ".join(f"{s[k]:.3f}" for k in ("label", *METHODS)) + " |"
        for source, s in shares.items()
    ]
    lines += [
        "",
        "## Cost per prompt",
        "",
        f"On this machine ({platform.machine()}, Python {platform.python_version()}, numpy"
        f" {np.__version__}): microseconds per prompt of lower-cased test text cut to each length."
        " Batch: 256 prompts per call, as `extract_batch` calls it (median and p99 over 60 calls);"
        " alone: one prompt per call (median and p99 over 1200 calls). The model reads the first"
        f" {model.max_chars} characters, so longer prompts cost what {model.max_chars} do.",
        "",
        "| characters | batch median | batch p99 | alone median | alone p99 | patterns median |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.chars} | {c.batch_median_us:.1f} | {c.batch_p99_us:.1f} | {c.single_median_us:.1f}"
        f" | {c.single_p99_us:.1f} | {c.patterns_median_us:.1f} |"
        for c in costs
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (.npz)")
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("docs/evaluation/intent-model.md"),
        help="Markdown report",
    )
    parser.add_argument(
        "--per-source", type=int, default=400, help="prompts per generator and language"
    )
    args = parser.parse_args(argv)
    training = Training()
    say = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    tune = corpus("tune", args.per_source, SEED)
    test = corpus("test", args.per_source, TEST_SEED)
    say(f"corpus: {len(tune)} tune and {len(test)} test prompts; training")
    model = train(tune, training)
    model.save(args.out)
    shipped = IntentModel.load(args.out, training.max_chars)  # measured as it ships: float16
    tagger = IntentTagger(Settings().intent.patterns)
    predicted = predictions(test, shipped, tagger)
    say("measuring cost")
    costs = cost([e.prompt for e in test], shipped, tagger)
    write_report(
        args.report, tune, test, shipped, training, measure(test, predicted),
        harvest_shares(test, predicted), costs,
    )  # fmt: skip
    say(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
