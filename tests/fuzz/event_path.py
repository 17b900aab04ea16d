"""Fuzz the per-event path with raw bytes: each line is one Kafka record of a batch, decoded
and, when it is an event, taken through features, account state, detectors, cooldown and the
alert builders, once on fresh states and once on warm ones. None of it may raise; every
alert must meet the contract; every state must survive its stored form.

    python -m tests.fuzz.event_path -max_total_time=600 [corpus_dir]
"""

from __future__ import annotations

import os
import sys
from typing import Final

from tests.fuzz import runner

MAX_RECORDS: Final = 16  # a batch, not a flood: the per-input cost stays small


def build() -> runner.Target:
    from detector.events import RawRecord
    from tests.fuzz import targets

    path = targets.EventPath(warm=os.environ.get("FUZZ_WARM_STATE"))
    first = path.FIRST_OFFSET

    def one_input(data: bytes) -> None:
        lines = data.split(b"\n", MAX_RECORDS - 1)
        records = [RawRecord(targets.TOPIC, 0, first + i, None, v) for i, v in enumerate(lines)]
        path.process(records, path.states(None))
        # Honest and abusive warm states by turns, so one batch can mix both.
        turn = iter(range(MAX_RECORDS))
        path.process(records, lambda _: path.warm_state(next(turn) % 2))

    return one_input


if __name__ == "__main__":
    runner.main(sys.argv, build, lines=True)
