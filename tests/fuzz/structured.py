"""Fuzz the per-event path with contract-shaped events: the fuzzer's bytes choose, through
``atheris.FuzzedDataProvider``, each field's value among every JSON type and the values that
break parsers and arithmetic (lone surrogates, NUL, text of every Unicode plane, huge and
tiny numbers, 64-bit edges, long strings, deep nesting, duplicate keys, a BOM), so most
inputs are events that decode and reach features, state, detectors and alerts.

    python -m tests.fuzz.structured -max_total_time=600 [corpus_dir]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Final

import atheris

from tests.fuzz import runner

# Characters that change length when lower-cased, digits of other scripts (Unicode \d),
# separators, invisible and direction marks, astral characters, and both surrogate halves.
PIECES: Final = (
    "\x00", "\ufeff", "\u2028", "\u202e", "\u200b", "İ", "ß", "ﬀ", "\u212a", "Σ", "٣", "１２",
    "😀", "\U0010ffff", "\U000e0001", "e\u0301", "\ud800", "\udfff", "\ud83d", "\t", "\r\n",
    "\\", '"', "`", "deadbeefcafe0123", "3.14,15:9", "\ufffd", "\x7f", "\x85",
)  # fmt: skip
# What the intent tags and the template fingerprint look for.
PHRASES: Final = (
    "step by step", "write out your complete internal reasoning", "chain-of-thought",
    "grade it against this rubric", "rewrite this safely", "censorship", "coding agent",
    "unified diff", "failing tests", "available tools", "function calling", "Problem #4521: ",
    "`wall_7`", '"quoted value"', "if 3 workers build 5 walls in 2 days",
)  # fmt: skip
ACCOUNTS: Final = ("acct-abuse-001", "acct-user-0001", "a", "hostile-1", "x" * 128)
SPECIAL_INTEGERS: Final = (0, 1, 2**31 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30)  # fmt: skip
SPECIAL_NUMBERS: Final = (
    b"0", b"0.0", b"-0.0", b"5e-324", b"1.7976931348623157e308", b"1e-7", b"1e22",
    b"9007199254740993", b"1E+2", b"0e0", b"4102444800", b"99999999999.5",
)  # fmt: skip
BAD_NUMBERS: Final = (
    b"1e999", b"-1", b"-1e-300", b"9" * 400, b"0." + b"9" * 400, b"1e-" + b"9" * 40, b"01",
    b"1.", b".5", b"NaN", b"Infinity", b"-Infinity", b"0x10", b"+1",
)  # fmt: skip
LONG_CHARS: Final = 300_000  # past the 64 KiB prompts are cut to, in every UTF-8 width
MAX_EVENTS: Final = 4


class EventWriter:
    """Messages of one fuzz input, written field by field as raw JSON text.

    Rare choices are taken on the highest value a draw can have: once the input is used up,
    every draw is 0, and the rest of the batch is plain valid events, not a run of hostile ones.
    """

    def __init__(self, fdp: atheris.FuzzedDataProvider, properties: dict[str, Any]) -> None:
        self.fdp = fdp
        self.properties = properties
        self.required = ("event_id", "ts", "account_id", "model")

    def message(self) -> bytes:
        fdp = self.fdp
        wild = fdp.ConsumeIntInRange(0, 7) == 7  # mostly events that decode
        # One field in a quarter of the messages gets a value the contract may refuse.
        bad = fdp.PickValueInList(list(self.properties)) if fdp.ConsumeIntInRange(0, 3) == 3 else ""
        pairs: list[tuple[bytes, bytes]] = []
        for name, spec in self.properties.items():
            present = name in self.required or name == bad or fdp.ConsumeIntInRange(0, 2) == 0
            if wild and fdp.ConsumeBool():
                present = not present
            if present:
                pairs.append((self.string(name), self.value(name, spec, wild or name == bad)))
        for _ in range(fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeIntInRange(0, 3) == 3 else 0):
            pairs.append((self.string(self.text(40)), self.anything(3)))  # unknown fields
        if pairs and fdp.ConsumeIntInRange(0, 15) == 15:  # a key twice: which one wins?
            key, _ = pairs[fdp.ConsumeIntInRange(0, len(pairs) - 1)]
            pairs.append((key, self.anything(2)))
        if fdp.ConsumeBool():
            pairs.reverse()
        space = fdp.PickValueInList([b"", b" ", b"\n", b"\t\r\n "])
        body = (b"," + space).join(k + b":" + space + v for k, v in pairs)
        text = b"{" + space + body + space + b"}"
        if fdp.ConsumeIntInRange(0, 31) == 31:
            text = b"\xef\xbb\xbf" + text
        if wild and fdp.ConsumeBool():
            broken = [text[: len(text) // 2], text + b"}", text + b" x", b"[" + text + b"]"]
            text = fdp.PickValueInList(broken)
        return text

    def value(self, name: str, spec: dict[str, Any], bad: bool) -> bytes:
        fdp = self.fdp
        if bad:
            return fdp.PickValueInList([self.anything, self.bad_number, self.raw_string])(3)
        if name == "account_id" and fdp.ConsumeBool():
            return self.string(fdp.PickValueInList(list(ACCOUNTS)))
        kind = spec["type"]
        if "enum" in spec:
            return self.string(fdp.PickValueInList(list(spec["enum"])))
        if kind == "string":
            return self.string(self.valid_text(name, spec))
        if kind == "integer":
            return str(self.integer()).encode()
        if kind == "boolean":
            return b"true" if fdp.ConsumeBool() else b"false"
        return self.number(near_now=name in ("ts", "account_created_ts"))

    def valid_text(self, name: str, spec: dict[str, Any]) -> str:
        long = name in ("prompt", "system_prompt") and self.fdp.ConsumeIntInRange(0, 7) == 7
        text = self.text(LONG_CHARS if long else 200)
        text = text.encode("utf-8", "ignore").decode("utf-8")  # no lone surrogates
        if "maxLength" in spec:
            text = text[: spec["maxLength"]]
        return text + "x" * (spec.get("minLength", 0) - len(text))

    def text(self, limit: int) -> str:
        fdp = self.fdp
        parts: list[str] = []
        for _ in range(fdp.ConsumeIntInRange(0, 6)):
            kind = fdp.ConsumeIntInRange(0, 5)
            if kind == 0:
                parts.append(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64)))
            elif kind == 1:
                parts.append(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 16)))
            elif kind == 2:
                parts.append(fdp.PickValueInList(list(PIECES)))
            elif kind == 3:  # any code point of any plane
                parts.append(chr(fdp.ConsumeIntInRange(0, 0x10FFFF)))
            elif kind == 4:
                parts.append(fdp.PickValueInList(list(PHRASES)))
            else:
                parts.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)).decode("latin-1"))
        text = "".join(parts)
        if text and limit > 200:  # long: the text repeated past the limit prompts are cut to
            text *= max(1, limit // len(text))
        return text[:limit]

    def string(self, text: str) -> bytes:
        # Escaped or raw; a raw lone surrogate becomes bytes that are not UTF-8 at all.
        escaped = json.dumps(text, ensure_ascii=self.fdp.ConsumeBool())
        return escaped.encode("utf-8", "surrogatepass")

    def raw_string(self, depth: int) -> bytes:
        return b'"' + self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, 40)) + b'"'

    def integer(self) -> int:
        fdp = self.fdp
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 0:
            return fdp.ConsumeIntInRange(0, 10_000)
        if kind == 1:
            return fdp.ConsumeUInt(8)
        if kind == 2:
            return int(fdp.PickValueInList(list(SPECIAL_INTEGERS)))
        return fdp.ConsumeIntInRange(0, 2**63 - 1)

    def number(self, near_now: bool) -> bytes:
        fdp = self.fdp
        kind = fdp.ConsumeIntInRange(0, 4)
        if near_now and kind <= 3:  # event time around the fixed clock: windows, lateness, gaps
            return repr(1_767_225_600.0 + fdp.ConsumeFloatInRange(-30 * 86400.0, 3 * 86400.0)).encode()  # fmt: skip
        if kind == 2:
            return fdp.PickValueInList(list(SPECIAL_NUMBERS))
        if kind == 3:
            return str(self.integer()).encode()
        return repr(abs(fdp.ConsumeRegularFloat())).encode()

    def bad_number(self, depth: int) -> bytes:
        fdp = self.fdp
        if fdp.ConsumeBool():
            return fdp.PickValueInList(list(BAD_NUMBERS))
        return repr(fdp.ConsumeFloat()).encode()  # nan, inf and negatives too

    def anything(self, depth: int) -> bytes:
        """A JSON value of any type, nested up to ``depth`` (or, rarely, very deep)."""
        fdp = self.fdp
        kind = fdp.ConsumeIntInRange(0, 9)
        if kind == 0:
            return b"null"
        if kind == 1:
            return b"true" if fdp.ConsumeBool() else b"false"
        if kind == 2:
            return str(self.integer()).encode()
        if kind == 3:
            return self.number(near_now=False)
        if kind == 4:
            return self.string(self.text(80))
        if kind == 5 and depth > 0:
            items = [self.anything(depth - 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
            return b"[" + b",".join(items) + b"]"
        if kind == 6 and depth > 0:
            items = [
                self.string(self.text(10)) + b":" + self.anything(depth - 1)
                for _ in range(fdp.ConsumeIntInRange(0, 3))
            ]
            return b"{" + b",".join(items) + b"}"
        if kind == 7 and fdp.ConsumeIntInRange(0, 7) == 7:
            levels = fdp.PickValueInList([100, 1_000, 10_000])
            return b"[" * levels + b"1" + b"]" * levels
        return self.bad_number(depth)


def build() -> runner.Target:
    from detector.contract import QUERY_EVENT_SCHEMA, load_schema
    from detector.events import RawRecord
    from tests.fuzz import targets

    path = targets.EventPath(warm=os.environ.get("FUZZ_WARM_STATE"))
    properties = load_schema(QUERY_EVENT_SCHEMA)["properties"]

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        # Every account fresh, or a copy of the warm honest or abusive state.
        which = fdp.ConsumeIntInRange(0, 2)
        partition = fdp.ConsumeIntInRange(0, 3)
        # Any offsets: some at or below the warm states' watermark, some repeated.
        redelivered = fdp.ConsumeIntInRange(0, 7) == 7
        writer = EventWriter(fdp, properties)
        records = []
        for i in range(fdp.ConsumeIntInRange(1, MAX_EVENTS)):
            offset = fdp.ConsumeIntInRange(0, 2**63 - 1) if redelivered else path.FIRST_OFFSET + i
            records.append(RawRecord(targets.TOPIC, partition, offset, None, writer.message()))
        path.process(records, path.states(which - 1 if which else None))

    return one_input


if __name__ == "__main__":
    runner.main(sys.argv, build, lines=False, dictionary=False)
