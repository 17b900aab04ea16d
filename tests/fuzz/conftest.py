"""Without atheris (no wheel for this machine: see pyproject.toml), the harness modules are
not collected and the fuzz runs are skipped; the in-process checks still run. The long runs
(``fuzz_long``) run only when asked for by name: ``pytest -m fuzz_long tests/fuzz``."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("atheris") is None:
    collect_ignore = ["decode.py", "event_path.py", "runner.py", "structured.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Not deselected through addopts: any -m on the command line (`-m 'not integration'`)
    # would replace it and start half an hour of fuzzing.
    if "fuzz_long" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a long fuzz run: pytest -m fuzz_long tests/fuzz")
    for item in items:
        if item.get_closest_marker("fuzz_long"):
            item.add_marker(skip)
