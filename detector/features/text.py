"""Prompt fingerprints: normalise, then a 64-bit SimHash of word bigrams (vectorised, xxhash).

Near-duplicate prompts (one template, different slot values) land a few bits apart;
unrelated prompts about half of the 64 bits apart.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Final

import numpy as np
import xxhash

# Masked values: numbers, hex ids, short quoted values, i.e. ``SLOTS_PLAIN``. ``_SLOTS`` is the
# same pattern opened by a class of the four alternatives' first characters, each alternative
# then checking the character it starts with: the regex engine skips to the next position
# that can start a value instead of trying all four everywhere. Its runs are possessive
# (``*+``, ``{7,}+``): nothing follows them, so giving characters back can never make a match,
# and the engine need not record how it could.
SLOTS_PLAIN: Final = r"\d+(?:[.,:]\d+)*|[0-9a-f]{8,}|`[^`]{1,80}`|\"[^\"]{1,80}\""
_SLOTS: Final = re.compile(
    r"[\da-f`\"](?:(?<=\d)\d*+(?:[.,:]\d+)*+|(?<=[a-f])[0-9a-f]{7,}+|(?<=`)[^`]{1,80}`|(?<=\")[^\"]{1,80}\")"
)
# A text without a hex id (a run of 8 or more hex digits; nearly every prompt) is masked by
# the pattern without that alternative: its opening class then stops only at digits and
# quotes, not at every letter a-f. ``_HEX_MARKS`` marks hex digits, so one ``in`` finds a run.
_SLOTS_NO_HEX: Final = re.compile(
    r"[\d`\"](?:(?<=\d)\d*+(?:[.,:]\d+)*+|(?<=`)[^`]{1,80}`|(?<=\")[^\"]{1,80}\")"
)


def _ascii_digits(pattern: str) -> str:
    """``pattern`` with ``\\d`` spelled ``0-9``: the same matches on ASCII text, where the regex
    engine then tests each character against a bitmap instead of Unicode's digit property.

    >>> _ascii_digits(r"[\\d`](?<=\\d)\\d*+")
    '[0-9`](?<=[0-9])[0-9]*+'
    """
    return pattern.replace(r"[\d", "[0-9").replace(r"\d", "[0-9]")


# ASCII text (nearly every prompt) is masked by the same patterns with ASCII digits, a bitmap
# test per character. Text with other characters keeps Unicode's digits.
_SLOTS_ASCII: Final = re.compile(_ascii_digits(_SLOTS.pattern))
_SLOTS_NO_HEX_ASCII: Final = re.compile(_ascii_digits(_SLOTS_NO_HEX.pattern))
_HEX_MARKS: Final = bytes(
    ord("x") if chr(c) in "0123456789abcdef" else ord(" ") for c in range(256)
)
_HEX_RUN: Final = b"x" * 8
# Tokens are the runs of ``[a-z_]+|0``. After masking, the only digits left are the masks'
# own spaced "0"s, so every other byte can become a space and ``split`` find the tokens.
_TOKEN_BYTES: Final = bytes(
    c if chr(c) in "abcdefghijklmnopqrstuvwxyz_0" else ord(" ") for c in range(256)
)
# Bound the work per prompt: the template shows in its first few hundred words.
MAX_TOKENS: Final = 256
_MIX: Final = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying scrambles the left word's bits


def normalise(text: str) -> list[bytes]:
    """Lower-cased ASCII word tokens (``[a-z_]+``), with numbers, hex ids and quoted values
    masked as ``0``; any other character separates tokens.

    >>> normalise("Problem #4521: if 3 workers build `wall_7`...")
    [b'problem', b'0', b'if', b'0', b'workers', b'build', b'0']
    """
    return normalise_lowered(text.lower())


def normalise_lowered(lowered: str) -> list[bytes]:
    """``normalise`` of text that is already lower-cased (feature extraction lowers it once)."""
    # "replace" makes each non-ASCII character one "?": a separator, as it is for the tokens.
    hex_id = _HEX_RUN in lowered.encode("ascii", "replace").translate(_HEX_MARKS)
    if lowered.isascii():
        slots = _SLOTS_ASCII if hex_id else _SLOTS_NO_HEX_ASCII
    else:
        slots = _SLOTS if hex_id else _SLOTS_NO_HEX
    masked = slots.sub(" 0 ", lowered)
    return masked.encode("ascii", "replace").translate(_TOKEN_BYTES).split()[:MAX_TOKENS]


def simhash(tokens: list[bytes]) -> int:
    """64-bit SimHash of the token bigrams; 0 for an empty text.

    >>> a = simhash(normalise("Grade answer 17 against the rubric: correctness, clarity, safety."))
    >>> b = simhash(normalise("Grade answer 912 against the rubric: correctness, clarity, safety."))
    >>> hamming(a, b)
    0
    """
    return simhashes([tokens])[0]


def simhashes(docs: list[list[bytes]]) -> list[int]:
    """``simhash`` of many token lists at once: numpy's fixed cost is paid once per batch.

    >>> docs = [normalise("one two three"), [], [b"one"], normalise("three two one")]
    >>> simhashes(docs)[1], simhashes(docs)[2] == _word(b"one")
    (0, True)
    """
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    out = np.zeros(len(docs), dtype=np.uint64)
    total = int(lengths.sum())
    if total:
        words = np.fromiter(
            map(_WORDS.__getitem__, chain.from_iterable(docs)), dtype=np.uint64, count=total
        )
        single = lengths == 1  # one word, one "gram": the SimHash is the word's hash
        out[single] = words[(np.cumsum(lengths) - 1)[single]]
        doc_of = np.repeat(np.arange(len(docs)), lengths)
        inside = doc_of[:-1] == doc_of[1:]  # bigrams never straddle two documents
        if inside.any():
            left, right = words[:-1][inside], words[1:][inside]
            # Bigram hashes from the word hashes: one xxhash call per word, not per bigram.
            grams = (left * _MIX) ^ ((right << np.uint64(31)) | (right >> np.uint64(33)))
            bits = np.unpackbits(grams.view(np.uint8), bitorder="little").reshape(-1, 64)
            owner = doc_of[:-1][inside]
            firsts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            votes = _bit_counts(bits, firsts, int(lengths.max()) - 1) * 2
            votes -= (lengths[owner[firsts]] - 1)[:, None].astype(np.int32)
            packed = np.packbits((votes > 0)[:, ::-1], axis=1).view(">u8")[:, 0]
            out[owner[firsts]] = packed
    return [int(x) for x in out]


def _bit_counts(bits: np.ndarray, firsts: np.ndarray, most: int) -> np.ndarray:
    """Per document (rows from ``firsts`` on), how many of its bigram hashes have each bit set;
    ``most`` is the most bigrams a document has."""
    if most <= 255:
        # A uint64 add sums 8 byte-lanes of 0/1 at once; no lane can carry into the next
        # with at most 255 bigrams (normalise keeps 256 tokens).
        lanes = np.add.reduceat(bits.view(np.uint64), firsts, axis=0)
        return lanes.view(np.uint8).astype(np.int32)
    return np.add.reduceat(bits, firsts, axis=0, dtype=np.int32)


def _word(token: bytes) -> int:
    return xxhash.xxh64_intdigest(token)


class _WordHashes(dict[bytes, int]):
    """``_word`` memoised: words repeat across prompts, and a dict look-up from ``map`` is
    cheaper than an lru_cache call. Emptied when full, to bound the memory."""

    def __missing__(self, token: bytes) -> int:
        if len(self) >= 1 << 16:
            self.clear()
        value = self[token] = _word(token)
        return value


_WORDS: Final = _WordHashes()


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
