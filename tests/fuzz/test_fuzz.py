"""The fuzz harnesses as tests.

Each harness fuzzes for a few seconds in a subprocess (a crash fails the test and leaves
its input in the test's ``artifacts`` directory, with libFuzzer's report in the failure);
the hostile messages too large to seed libFuzzer go through the targets directly. The
long run is opt-in: ``pytest -m fuzz_long tests/fuzz`` (``FUZZ_SECONDS`` per harness,
600 by default; ``FUZZ_CORPUS_DIR`` keeps the corpus it grows for the next run).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from detector.events import RawRecord
from tests.fuzz import seeds, targets
from tests.hostile import hostile_messages

ROOT: Final = Path(__file__).resolve().parents[2]
HARNESSES: Final = ("decode", "event_path", "structured")
SHORT_SECONDS: Final = 3  # each; start-up (instrumenting, warm-up, seeds) adds about as much
LONG_SECONDS: Final = int(os.environ.get("FUZZ_SECONDS", "600"))
# A single input slower than this is a finding too: one record would stall a worker.
INPUT_TIMEOUT_S: Final = 30
needs_atheris = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris has no wheel for this machine"
)


@pytest.fixture(scope="module")
def path() -> Iterator[targets.EventPath]:
    yield targets.EventPath()


@pytest.fixture(scope="module")
def warm_file(path: targets.EventPath, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warm detectors and states, learned once here (not instrumented: faster)."""
    file = tmp_path_factory.mktemp("warm") / "warm.msgpack"
    path.save(file)
    return file


def fuzz(harness: str, workdir: Path, seconds: int, corpus: Path, warm: Path) -> str:
    """Run one harness; fail with libFuzzer's report if it found anything. Returns its log."""
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        f"tests.fuzz.{harness}",
        f"-max_total_time={seconds}",
        f"-timeout={INPUT_TIMEOUT_S}",
        "-seed=1",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    env = {**os.environ, "FUZZ_SEED_DIR": str(workdir / "seeds"), "FUZZ_WARM_STATE": str(warm)}
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # libFuzzer's lines and Python's traceback, in order
        text=True,
        errors="replace",
        timeout=seconds + 240,
    )
    (workdir / "fuzz.log").write_text(done.stdout, encoding="utf-8")
    found = sorted(p.name for p in artifacts.iterdir())
    if done.returncode or found:
        pytest.fail(
            f"`{' '.join(command)}` exited {done.returncode}; inputs saved in {artifacts}: "
            f"{found}\n{_report(done.stdout)}",
            pytrace=False,
        )
    return done.stdout


def _report(log: str) -> str:
    """The part of a libFuzzer log that says what happened (not the instrumentation lines)."""
    lines = [line for line in log.splitlines() if not line.startswith("INFO: Instrumenting")]
    return "\n".join(lines[-60:])


def final_figures(log: str) -> str:
    """``cov``, ``ft``, runs and speed at the end of a run."""
    done = re.findall(r"^#(\d+)\s+DONE\s+(cov: \d+ ft: \d+ corp: \S+)", log, re.M)
    speed = re.findall(r"^stat::average_exec_per_sec:\s+(\d+)", log, re.M)
    runs = re.findall(r"^stat::number_of_executed_units:\s+(\d+)", log, re.M)
    if not done:
        return "no DONE line"
    return f"{done[-1][1]}, {runs[-1] if runs else done[-1][0]} runs, {speed[-1] if speed else '?'} exec/s"


@needs_atheris
@pytest.mark.parametrize("harness", HARNESSES)
def test_fuzz_briefly(harness: str, tmp_path: Path, warm_file: Path) -> None:
    log = fuzz(harness, tmp_path, SHORT_SECONDS, tmp_path / "corpus", warm_file)
    assert "DONE" in log, _report(log)


def test_every_hostile_message_holds_the_invariants(path: targets.EventPath) -> None:
    # Including those larger than libFuzzer's inputs: megabyte strings, 100,000 levels.
    messages = hostile_messages(seeds.HOSTILE_COUNT, seeds.SEED)
    assert any(len(m) > seeds.SEED_MAX_BYTES for _, m in messages)
    first = path.FIRST_OFFSET
    for n, (_, message) in enumerate(messages):
        targets.decode_one(message)
        record = RawRecord(targets.TOPIC, 0, first + n, None, message)
        path.process([record], path.states(None))
        path.process([record], path.states(n % 2))


def test_warm_state_is_warm(path: targets.EventPath) -> None:
    # Otherwise the fuzzers would never reach the anomaly model's score or the baselines.
    suite, settings = path.suite, targets.SETTINGS
    assert suite.anomaly.learned >= settings.anomaly.window_size
    assert suite.baseline.samples >= settings.volume_rule.baseline_min_samples
    assert suite.behaviour_baselines.samples >= settings.behaviour.baseline_min_samples
    abusive = path.warm_state(1)
    assert abusive.cooldowns, "the abusive account's state has no findings in cooldown"


def test_warm_state_restores_from_its_file(path: targets.EventPath, warm_file: Path) -> None:
    again = targets.EventPath(warm=str(warm_file))
    assert again.warm == path.warm
    assert again.suite.anomaly.learned == path.suite.anomaly.learned


def test_a_dead_letter_echoing_the_message_is_caught() -> None:
    secret = "the prompt text nobody may read in a dead letter"
    assert targets.echo(f"field prompt: {secret}", secret.encode()) is not None
    assert (
        targets.echo("field ts: 99999999999999999999999999999999999 is after 0", b"9" * 40) is None
    )


@needs_atheris
@pytest.mark.fuzz_long
@pytest.mark.timeout(LONG_SECONDS + 300)
@pytest.mark.parametrize("harness", HARNESSES)
def test_fuzz_long(harness: str, tmp_path: Path, warm_file: Path) -> None:
    corpus = Path(os.environ.get("FUZZ_CORPUS_DIR") or tmp_path / "corpora") / harness
    log = fuzz(harness, tmp_path, LONG_SECONDS, corpus, warm_file)
    print(f"{harness}: {final_figures(log)} (log: {tmp_path / 'fuzz.log'})")
