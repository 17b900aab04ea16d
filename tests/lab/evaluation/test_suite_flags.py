"""``detector eval --suite`` and ``detector simulate --suite``: each wrong use names its flag."""

from __future__ import annotations

import pytest

from detector.cli import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["eval", "--scenario", "ci", "--suite", "ci"], "--suite"),
        (["eval", "--suite", "ci", "--events", "e.jsonl", "--labels", "l.json"], "--events"),
        (["eval", "--scenario", "ci", "--draws", "3"], "--draws and --first need --suite"),
        (["eval", "--scenario", "ci", "--first", "2"], "--draws and --first need --suite"),
        (["eval", "--suite", "ci", "--seed", "3"], "--seed"),
        (["eval", "--suite", "ci", "--draws", "0"], "--draws must be 1 or more"),
        (["eval", "--suite", "ci", "--scale", "0"], "--scale must be above 0"),
        (["eval", "--suite", "no-such-suite"], "--suite"),
        (["simulate", "--out", "x"], "--scenario, or --suite"),
        (["simulate", "--suite", "ci", "--out", "x"], "--draw K"),
        (["simulate", "--suite", "ci", "--draw", "0", "--seed", "1", "--out", "x"], "no --seed"),
        (["simulate", "--scenario", "ci", "--draw", "1", "--out", "x"], "--draw needs --suite"),
        (["simulate", "--suite", "ci", "--draw", "-1", "--out", "x"], "--draw/--first"),
    ],
)
def test_wrong_flags_are_named(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err, err
