"""The entry point every harness shares: instrument, build the target, seed, fuzz.

Arguments are libFuzzer's (``-max_total_time=600``, ``-runs=N``, ``-artifact_prefix=dir/``,
corpus directories; a file reproduces that input). The seed corpus goes to ``$FUZZ_SEED_DIR``
(a new temporary directory otherwise) and is added after the corpus directories given, so
new inputs land in the first of those. Nothing here imports ``detector`` before the
instrumentation is in place: coverage is of our code.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

Target = Callable[[bytes], None]


def main(
    argv: list[str],
    build: Callable[[], Target],
    lines: bool,
    dictionary: bool = True,
) -> None:
    """Fuzz ``build()``'s target. ``lines``: seeds include batches of messages, one per line;
    ``dictionary``: splice the contract's tokens into inputs (for harnesses that read JSON)."""
    with atheris.instrument_imports(include=["detector"]):
        target = build()
    from detector.contract import ALERT_SCHEMA, QUERY_EVENT_SCHEMA, validator
    from tests.fuzz import seeds  # imports detector_lab.sim and tests.hostile: not worth covering

    # The schema validators are code fastjsonschema generates (no import to hook): their
    # branches, one or more per field and rule, are what guides inputs through the contract.
    for schema in (QUERY_EVENT_SCHEMA, ALERT_SCHEMA):
        atheris.instrument_func(validator(schema))

    args = list(argv)
    inputs = [a for a in args[1:] if not a.startswith("-")]
    # Files alone mean "run these inputs" (reproducing a crash): no seeds then.
    if all(Path(a).is_dir() for a in inputs):
        seed_dir = Path(os.environ.get("FUZZ_SEED_DIR") or tempfile.mkdtemp(prefix="fuzz-seeds-"))
        count = seeds.write_corpus(seed_dir, seeds.seed_inputs(lines))
        print(f"INFO: {count} seeds in {seed_dir}", file=sys.stderr)
        args.append(str(seed_dir))
        if dictionary and not any(a.startswith("-dict=") for a in args):
            dict_path = seed_dir.parent / f"{seed_dir.name}.dict"
            seeds.write_dictionary(dict_path)
            args.insert(1, f"-dict={dict_path}")
    atheris.Setup(args, target)
    atheris.Fuzz()
