"""Loaded by every pytest run (``-p tests.compiled_build`` in pyproject.toml), including a
run of ``detector/`` alone, which does not load ``tests/conftest.py``: after ``make
compiled`` it would otherwise collect doctests from the compiled modules."""

from __future__ import annotations

import pytest

from detector import native


def pytest_configure(config: pytest.Config) -> None:
    # After `make compiled`, the tests run the compiled modules. One older than its source
    # would test the old code; and the doctests of a compiled module cannot be collected
    # (its functions are built-ins), so they run on the interpreted code only, as in CI.
    if stale := native.stale_extensions():
        pytest.exit(
            f"compiled modules older than their source or no longer listed: {', '.join(stale)}; "
            "run `make compiled` again, or `make uncompiled` to test the sources",
            returncode=2,
        )
    compiled = [
        str(native.source_path(name)) for name, _ in native.extensions() if name in native.MODULES
    ]
    config.option.ignore = [*(config.option.ignore or []), *compiled]
