"""Prompt fingerprints: normalise, then a 64-bit SimHash of word bigrams (vectorised, xxhash).

Near-duplicate prompts (one template, different slot values) land a few bits apart;
unrelated prompts about half of the 64 bits apart.
"""

from __future__ import annotations

import re

import numpy as np
import xxhash

_SLOTS = re.compile(r"\d+(?:[.,:]\d+)*|[0-9a-f]{8,}|`[^`]{1,80}`|\"[^\"]{1,80}\"")
_TOKENS = re.compile(r"[a-z_]+|0")
MAX_TOKENS = 256  # bound the work per prompt: the template shows in its first few hundred words
_BITS = np.arange(64, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant: multiplying scrambles the left word's bits


def normalise(text: str) -> list[str]:
    """Lower-cased word tokens with numbers, hex ids and quoted values masked as ``0``.

    >>> normalise("Problem #4521: if 3 workers build `wall_7`...")
    ['problem', '0', 'if', '0', 'workers', 'build', '0']
    """
    return _TOKENS.findall(_SLOTS.sub(" 0 ", text.lower()))[:MAX_TOKENS]


def simhash(tokens: list[str]) -> int:
    """64-bit SimHash of the token bigrams; 0 for an empty text.

    >>> a = simhash(normalise("Grade answer 17 against the rubric: correctness, clarity, safety."))
    >>> b = simhash(normalise("Grade answer 912 against the rubric: correctness, clarity, safety."))
    >>> hamming(a, b)
    0
    """
    if not tokens:
        return 0
    words = np.fromiter(
        (xxhash.xxh64_intdigest(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens)
    )
    # Bigram hashes from the word hashes, vectorised: one xxhash call per word, not per bigram.
    grams = (
        (words[:-1] * _MIX) ^ ((words[1:] << np.uint64(31)) | (words[1:] >> np.uint64(33)))
        if len(words) > 1
        else words
    )
    bits = (grams[:, None] >> _BITS) & np.uint64(1)
    votes = bits.sum(axis=0, dtype=np.int64) * 2 - len(grams)
    return int(np.packbits((votes > 0)[::-1]).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
