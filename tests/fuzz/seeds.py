"""The seed corpus and the libFuzzer dictionary, written at run time (nothing big is committed).

Seeds are the hostile messages of ``tests/hostile.py`` (every kind, as generated for the
black-box tests), valid events of the simulator's basic traffic, and batches of both as
lines. Messages larger than ``SEED_MAX_BYTES`` are left out: libFuzzer would cut them to
its ``-max_len`` anyway; ``test_fuzz.py`` runs them through the targets directly instead.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Final

import orjson

from detector.contract import QUERY_EVENT_SCHEMA, load_schema
from detector_lab.sim.basic import BasicTraffic, generate
from tests.hostile import hostile_messages

SEED_MAX_BYTES: Final = 64 * 1024
HOSTILE_COUNT: Final = 300
SEED: Final = 20260527


def valid_events(count: int, seed: int = SEED) -> list[bytes]:
    """Valid events of honest accounts and of the abusive one, in time order."""
    events = generate(BasicTraffic(benign_accounts=8, hours=1.0, abusive_per_hour=60.0, seed=seed))
    step = max(1, len(events) // count)
    return [orjson.dumps(e) for e in events[::step][:count]]


def seed_inputs(lines: bool) -> list[bytes]:
    """Every seed; with ``lines``, also batches of several messages, one per line."""
    hostile = [m for _, m in hostile_messages(HOSTILE_COUNT, SEED)]
    valid = valid_events(60)
    seeds = hostile + valid
    if lines:
        rng = random.Random(SEED)
        small = [m for m in seeds if len(m) < 2048 and b"\n" not in m]
        for _ in range(40):
            seeds.append(b"\n".join(rng.sample(small, rng.randint(2, 8))))
        seeds.append(b"\n".join(valid[:16]))
    return [s for s in seeds if len(s) <= SEED_MAX_BYTES]


def write_corpus(directory: Path, seeds: list[bytes]) -> int:
    """The seeds as files named by content (libFuzzer's own naming); returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(set(seeds))


def dictionary_tokens() -> list[bytes]:
    """Tokens libFuzzer splices into messages: the contract's names and values, JSON's
    punctuation, and the hostile values the decoder must refuse."""
    schema = load_schema(QUERY_EVENT_SCHEMA)
    tokens = [b'"' + name.encode() + b'":' for name in schema["properties"]]
    tokens += [b'"' + v.encode() + b'"' for v in schema["properties"]["status"]["enum"]]
    tokens += [b"{", b"}", b"[", b"]", b":", b",", b'""', b"null", b"true", b"false"]
    tokens += [b"\\u0000", b"\\ud800", b"\\udfff", b"\\ud83d\\ude00", b"\\\\", b'\\"']
    tokens += [b"\xef\xbb\xbf", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x8f\xbf\xbf", b"\xe2\x80\xa8"]
    tokens += [b"-0", b"0e0", b"1e308", b"1e309", b"4.9e-324", b"-1", b"1.5"]
    tokens += [b"9007199254740993", b"9223372036854775807", b"9223372036854775808"]
    tokens += [b"1767225600.5", b"99999999999", b"203.0.113.7", b"2001:db8::1", b"fe80::1%eth0"]
    tokens += [b"step by step", b"internal reasoning", b"rubric", b"unified diff", b"tool calls"]
    return tokens


def write_dictionary(path: Path) -> None:
    """``tokens`` in libFuzzer's dictionary format (one quoted, escaped token a line)."""
    lines = []
    for token in dictionary_tokens():
        escaped = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token
        )
        lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
