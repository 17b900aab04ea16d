"""Black box: `detector tap` on the real broker, fed hostile messages (tests/hostile.py) over
HTTP, each alone and some inside JSON-lines bodies, with valid events posted in between.

Every request gets an HTTP answer; a message is taken (202) exactly when the pipeline's
decoder would take it and refused with a 4xx otherwise; refusals never quote the prompt; the
tap is alive at the end; and the topic holds exactly the events answered 202, byte for byte,
the valid ones posted in between among them.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import orjson
import pytest

from detector.config import Settings
from detector.decode import decode_record
from detector.events import QueryEvent, RawRecord
from tests.hostile import hostile_messages
from tests.integration.helpers import TopicReader
from tests.integration.test_tap import NDJSON, RunningTap, _event
from tests.tools import http_get

pytestmark = pytest.mark.integration

HOSTILE = 1_500
IN_LINES_EVERY = 5  # every fifth message is also posted inside a JSON-lines body
VALID_EVERY = 10  # a valid event after every tenth message
SEED = int(os.environ.get("HOSTILE_TEST_SEED", "20261207"))
PROMPT = b"Explain your reasoning step by step."  # every hostile event's prompt


def _taken(line: bytes, settings: Settings) -> bool:
    """Whether the worker would take this line as an event (the tap must agree)."""
    if len(line) > settings.tap.max_event_bytes:
        return False
    record = RawRecord("http", 0, 0, None, line)
    return isinstance(
        decode_record(record, time.time() + settings.features.max_future_s), QueryEvent
    )


def _lines_of(body: bytes) -> list[bytes]:
    lines = body.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def test_hostile_input_gets_an_answer_and_only_what_was_acknowledged_arrives(
    service_settings: Settings,
) -> None:
    settings = service_settings.with_overrides(tap={"port": 0})
    messages = hostile_messages(HOSTILE, SEED)
    acknowledged: list[bytes] = []  # every event of every request answered 202
    kinds: Counter[tuple[str, int]] = Counter()
    with RunningTap(settings) as tap:
        valid_n = 0

        def post(body: bytes, ctype: str, taken: bool, kind: str) -> None:
            status, reply, _ = tap.post(body, ctype)  # an answer, or the test fails here
            kinds[(kind, status)] += 1
            if taken:
                assert status == 202, (kind, status, reply)
                acknowledged.extend([body] if ctype == "application/json" else _lines_of(body))
            else:
                assert status in (400, 413), (kind, status, reply)
                assert PROMPT not in orjson.dumps(reply)

        for n, (kind, message) in enumerate(messages):
            post(message, "application/json", _taken(message, settings), kind)
            if n % IN_LINES_EVERY == 0:
                body = (
                    orjson.dumps(_event(10_000 + n)) + b"\n" + message + b"\n"
                    + orjson.dumps(_event(20_000 + n)) + b"\n"
                )  # fmt: skip
                lines = _lines_of(body)
                post(body, NDJSON, all(_taken(x, settings) for x in lines), f"{kind} in lines")
            if n % VALID_EVERY == 0:
                valid = orjson.dumps(_event(valid_n, account="acct-between"))
                valid_n += 1
                post(valid, "application/json", True, "valid")
        assert tap.thread.is_alive()
        assert http_get(f"http://127.0.0.1:{tap.ports[0][1]}/healthz")[0] == 200
    reader = TopicReader(settings, settings.kafka.input_topic)
    on_topic = [m.value for m in reader.read_to_end(60, "the topic")]
    reader.close()

    assert Counter(on_topic) == Counter(acknowledged)
    between = {orjson.dumps(_event(i, account="acct-between")) for i in range(valid_n)}
    assert between <= set(on_topic) and valid_n == HOSTILE // VALID_EVERY
    # Not vacuous: hostile kinds were refused, and some hostile but valid events taken.
    refused = {k for (k, s), n in kinds.items() if s in (400, 413) and n}
    assert {"truncated", "random_bytes", "not_an_object", "long_string"} <= refused
    assert any(s == 202 and k not in ("valid",) and "lines" not in k for k, s in kinds)
    print(f"\ntap hostile answers: {dict(sorted(kinds.items()))}")
