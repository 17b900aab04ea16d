"""Intent tags from a hashed character n-gram linear model: the capability a prompt asks for,
in phrasings and languages that no pattern names.

A prompt's features are the character 1- to 4-grams of its first ``max_chars`` characters,
lower-cased (ASCII digits folded to ``0``, runs of ASCII spaces and control characters to one
space, a space at each end), hashed into ``2**bits`` buckets and weighted by
``1/sqrt(n-grams)``. Each tag of ``detector.features.intent.TAGS`` has one-vs-rest logistic
weights and a threshold; a prompt gets the bit of every tag whose logit reaches it, so the
bits mean what ``IntentTagger``'s do and the two can be OR-ed.
``detector_lab.training.intent`` trains the weights on the simulator's ``tune`` phrase half
and chooses the thresholds there; they ship in the package (``intent_model.npz``), so nothing
is downloaded. Raw text stays in memory: only bits leave this module.

``ngram_buckets`` hashes a whole batch with numpy (no Python step per n-gram);
``ngram_buckets_plain`` is its definition, one n-gram at a time.

>>> from detector.features.intent import names
>>> model = IntentModel.load()
>>> names(model.tags(["you have shell access to the repo. reproduce the bug, fix it, run the tests"
...                     " and show me the diff."])[0])
['coding']
>>> model.tags(["what time is it in tokyo?", ""])
[0, 0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from detector.config import IntentSettings
from detector.features.intent import BIT, TAGS, IntentTagger

NGRAMS: Final = (1, 2, 3, 4)  # from 1: a Chinese character is often a word, and no prompt is empty
DEFAULT_BITS: Final = 16
SHIPPED: Final = "intent_model.npz"
_SPACE: Final = 32
_ZERO: Final = 48
_NINE: Final = 57
_POLY: Final = 0x100000001B3  # the FNV-1 prime: the n-gram's polynomial hash ...
_LENGTH_SALT: Final = 0x2545F4914F6CDD1D  # ... plus n times this: lengths hash apart ...
_MIX: Final = 0x9E3779B97F4A7C15  # ... times a golden-ratio constant; its top bits are the bucket
_MASK64: Final = (1 << 64) - 1
# The same as numpy scalars, made once: numpy's uint64 arithmetic wraps modulo 2**64.
_POLY_U64: Final = np.uint64(_POLY)
_MIX_U64: Final = np.uint64(_MIX)
_SALTS_U64: Final = {n: np.uint64(n * _LENGTH_SALT & _MASK64) for n in NGRAMS}
_BITS: Final = tuple(BIT[t] for t in TAGS)

Buckets = npt.NDArray[np.int64]


def _folded(cp: int) -> int:
    return _ZERO if _ZERO <= cp <= _NINE else _SPACE if cp <= _SPACE else cp


def ngram_buckets_plain(lowered: str, bits: int, max_chars: int) -> list[int]:
    """The buckets of one lower-cased prompt's n-grams, by position then length: the
    definition ``ngram_buckets`` must agree with, one n-gram at a time."""
    points: list[int] = []
    for ch in " " + lowered[:max_chars] + " ":
        cp = _folded(ord(ch))
        if not (cp == _SPACE and points and points[-1] == _SPACE):
            points.append(cp)
    out = []
    for i in range(len(points)):
        for n in NGRAMS:
            if i + n > len(points):
                break
            h = 0
            for cp in points[i : i + n]:
                h = (h * _POLY + cp) & _MASK64
            out.append((((h + n * _LENGTH_SALT) & _MASK64) * _MIX & _MASK64) >> (64 - bits))
    return out


def ngram_buckets(
    lowered: Sequence[str], bits: int, max_chars: int
) -> tuple[Buckets, npt.NDArray[np.int64]]:
    """The buckets of a batch's n-grams: row ``k`` holds, at each position of the prompts'
    folded code points laid end to end, the bucket of the ``NGRAMS[k]``-gram starting there,
    or ``2**bits`` where it would run past its prompt's end; and where each prompt starts
    (len + 1 offsets). Read column by column, a prompt's run is ``ngram_buckets_plain``'s list.

    >>> buckets, starts = ngram_buckets(["ab", "", "ab"], 8, 512)
    >>> starts.tolist(), buckets[:, 0:4].tolist() == buckets[:, 5:9].tolist()
    ([0, 4, 5, 9], True)
    >>> buckets[1:, 4].tolist()  # the empty prompt: the 1-gram of its one space, no longer ones
    [256, 256, 256]
    """
    if not lowered:
        return np.zeros((len(NGRAMS), 0), dtype=np.int64), np.zeros(1, dtype=np.int64)
    pieces = [" " + text[:max_chars] + " " for text in lowered]
    # surrogatepass: a lone surrogate is one code point here, as ord() sees it
    cp = np.frombuffer("".join(pieces).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cp = cp.astype(np.uint64)
    cp[(cp >= _ZERO) & (cp <= _NINE)] = _ZERO
    cp[cp <= _SPACE] = _SPACE
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    starts = np.cumsum(lengths) - lengths
    # A space after a space is dropped, within a prompt (each piece opens with one).
    keep = np.ones(len(cp), dtype=bool)
    keep[1:] = (cp[1:] != _SPACE) | (cp[:-1] != _SPACE)
    keep[starts] = True
    lengths = np.add.reduceat(keep.astype(np.int64), starts)
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    # Padded so that every row has a value at every position; those values are masked below.
    padded = np.full(total + NGRAMS[-1] - 1, _SPACE, dtype=np.uint64)
    padded[:total] = cp[keep]
    out = np.empty((len(NGRAMS), total), dtype=np.int64)
    h = padded
    grown = 1
    for row, n in enumerate(NGRAMS):
        while grown < n:
            h = h[:-1] * _POLY_U64 + padded[grown:]
            grown += 1
        salted = (h[:total] + _SALTS_U64[n]) * _MIX_U64
        out[row] = (salted >> np.uint64(64 - bits)).view(np.int64)
        # The n-grams that would run past a prompt's end start at its last n - 1 positions
        # (fewer in a prompt shorter than that): a few per prompt, set by index.
        back = np.arange(1, n)
        out[row, (ends[:, None] - back)[back <= lengths[:, None]]] = 1 << bits
    return out, np.concatenate(([0], ends))


@dataclass(frozen=True, eq=False)  # arrays: no field-wise ==
class IntentModel:
    """Per-tag logistic weights over hashed n-grams, with the logit from which a tag is set.

    ``weights`` has one row per bucket and one column per tag of ``TAGS``, and a last row of
    zeros for the n-grams that are not there (``ngram_buckets``); a threshold of ``inf``
    means the model never sets that tag.
    """

    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    thresholds: npt.NDArray[np.float64]
    max_chars: int = 512

    @property
    def bits(self) -> int:
        return int(self.weights.shape[0] - 1).bit_length() - 1

    @classmethod
    def load(cls, path: str | Path | None = None, max_chars: int = 512) -> IntentModel:
        """The weights file at ``path``, or the one shipped in the package."""
        source = (
            resources.files("detector.features").joinpath(SHIPPED) if path is None else Path(path)
        )
        with source.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            tags = tuple(str(t) for t in npz["tags"])
            if tags != TAGS:
                raise ValueError(f"intent model tags {tags} are not {TAGS}: train it again")
            weights = npz["weights"].astype(np.float32)
            return cls(
                weights=np.vstack((weights, np.zeros((1, len(TAGS)), dtype=np.float32))),
                bias=npz["bias"].astype(np.float32),
                thresholds=npz["thresholds"].astype(np.float64),
                max_chars=max_chars,
            )

    def save(self, path: str | Path) -> None:
        """Weights as float16 (half the size; the logits move by ~1e-3), compressed."""
        np.savez_compressed(
            path,
            tags=np.array(TAGS),
            weights=self.weights[:-1].astype(np.float16),
            bias=self.bias.astype(np.float32),
            thresholds=self.thresholds,
        )

    def logits(self, lowered: Sequence[str]) -> npt.NDArray[np.float64]:
        """Each prompt's logit per tag (rows: prompts; columns: ``TAGS``)."""
        if not lowered:
            return np.zeros((0, len(TAGS)))
        buckets, starts = ngram_buckets(lowered, self.bits, self.max_chars)
        # take, not fancy indexing: ~4x faster on rows of a large table
        per_position = np.take(self.weights, buckets, axis=0).sum(axis=0)
        sums = np.add.reduceat(per_position, starts[:-1], axis=0)
        # At least one n-gram each: the 1-gram of the space a prompt opens with.
        lengths = np.diff(starts)
        counts = sum(np.maximum(lengths - n + 1, 0) for n in NGRAMS)
        return self.bias + sums / np.sqrt(counts)[:, None]

    def logits_plain(self, lowered: str) -> list[float]:
        """``logits`` of one prompt, one n-gram at a time."""
        buckets = ngram_buckets_plain(lowered, self.bits, self.max_chars)
        norm = 1 / math.sqrt(len(buckets))
        return [
            float(self.bias[t]) + sum(float(self.weights[b, t]) for b in buckets) * norm
            for t in range(len(TAGS))
        ]

    def tags(self, lowered: Sequence[str]) -> list[int]:
        """The tag bits of each lower-cased prompt."""
        hits = self.logits(lowered) >= self.thresholds
        return (hits @ np.array(_BITS)).tolist()


def tagger(settings: IntentSettings) -> IntentTagger:
    """The patterns' tagger, with the model when ``settings.model.enabled``: what a worker
    tags events with.

    >>> tagger(IntentSettings(model={"enabled": False})).model is None
    True
    """
    if not settings.model.enabled:
        return IntentTagger(settings.patterns)
    model = IntentModel.load(settings.model.path or None, settings.model.max_chars)
    return IntentTagger(settings.patterns, model)
