"""Fuzz ``decode_record`` with raw bytes: it never raises, and returns an event the contract
accepts (the fast path agreeing with the reference path) or a dead letter with a known
reason whose detail does not echo the message.

    python -m tests.fuzz.decode -max_total_time=600 [corpus_dir]
"""

from __future__ import annotations

import sys

from tests.fuzz import runner


def build() -> runner.Target:
    from tests.fuzz import targets

    return targets.decode_one


if __name__ == "__main__":
    runner.main(sys.argv, build, lines=False)
