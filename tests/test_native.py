from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import orjson
import pytest

from detector import native
from tests.tools import REPO, run

DETECTOR = (sys.executable, "-m", "detector.cli")


def test_every_listed_module_has_its_source() -> None:
    assert all(native.source_path(m).is_file() for m in native.MODULES)


def test_an_extension_older_than_its_source_or_not_listed_is_stale(tmp_path: Path) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    fresh, old = native.MODULES[:2]
    unlisted = "detector.app"  # compiled by an earlier list: it would fail to load
    runtime = native.RUNTIME_MODULE
    for name in (fresh, old, unlisted, runtime):
        source = native.source_path(name, tmp_path)
        source.parent.mkdir(parents=True, exist_ok=True)
        if name != runtime:
            source.write_text("")
        source.with_name(source.stem + suffix).write_bytes(b"")
    aged = native.source_path(old, tmp_path)
    built = aged.with_name(aged.stem + suffix)
    os.utime(built, (aged.stat().st_mtime - 60,) * 2)

    assert sorted(name for name, _ in native.extensions(tmp_path)) == sorted(
        (fresh, old, unlisted, runtime)
    )
    assert sorted(native.stale_extensions(tmp_path)) == sorted((old, unlisted))


def test_the_compiled_modules_type_check() -> None:
    """mypyc compiles from the types: a type error here would break `make compiled`."""
    sources = [str(native.source_path(m)) for m in native.MODULES]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *sources],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _replay(copy: Path, events: Path, out: Path) -> list[bytes]:
    """Alerts of a replay run from ``copy`` (its ``detector`` package first on the path),
    without the fields that differ between any two runs, in a stable order."""
    done = run(*DETECTOR, "replay", "--input", str(events), "--output", str(out), cwd=copy)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for row in rows:
        del row["alert_id"], row["emitted_at"]
    return sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) for row in rows)


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None,
    reason="no C compiler (gcc) to build the compiled modules",
)
def test_the_compiled_build_raises_the_same_alerts(tmp_path: Path) -> None:
    """`make compiled` on a copy of the package: every listed module compiles, loads, and the
    replay of a scenario with campaigns raises exactly the alerts of the interpreted code."""
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "detector", copy / "detector", ignore=shutil.ignore_patterns("*.so"))
    shutil.copytree(REPO / "config", copy / "config")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, copy)
    data = tmp_path / "data"
    simulate = ["simulate", "--scenario", "default", "--scale", "0.02", "--out", str(data)]
    done = run(*DETECTOR, *simulate, cwd=copy)
    assert done.returncode == 0, done.stderr[-3000:]
    interpreted = _replay(copy, data / "events.jsonl", tmp_path / "interpreted.jsonl")

    build = subprocess.run(
        [sys.executable, "-m", "detector.native", "--build"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert build.stdout.splitlines()[-1].startswith(
        f"mypyc ({len(native.MODULES)} of {len(native.MODULES)} modules)"
    )

    compiled = _replay(copy, data / "events.jsonl", tmp_path / "compiled.jsonl")
    assert interpreted, "the scenario raised no alerts: nothing was compared"
    assert compiled == interpreted

    # Nothing per batch in reference cycles: a worker collects its old objects rarely, so
    # what only the collector frees (a compiled closure's environment) grows its memory.
    # (141 objects while the store and the campaign link read their replies in closures.)
    events, out = str(data / "events.jsonl"), str(tmp_path / "c.jsonl")
    cycles = run(sys.executable, "-c", _IN_CYCLES, events, out, cwd=copy)
    assert cycles.returncode == 0, cycles.stderr[-3000:]
    found = int(cycles.stdout.split()[-1])
    assert found < 20, f"a compiled replay left {found} objects in reference cycles"


# A replay with the collector off, then how many objects only the collector could free.
_IN_CYCLES = """
import gc, sys
from pathlib import Path
from detector.app import replay
from detector.config import load_settings
from detector.embedded import EmbeddedRedis
with EmbeddedRedis() as server:
    gc.collect()
    gc.disable()
    replay(load_settings(), Path(sys.argv[1]), Path(sys.argv[2]), redis_url=server.url)
    print(gc.collect())
"""
