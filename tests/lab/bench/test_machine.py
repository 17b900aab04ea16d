import platform
import sys

import pytest

from detector_lab.bench.machine import describe_python


def test_describe_python_names_the_version() -> None:
    assert describe_python().startswith(
        f"{platform.python_implementation()} {platform.python_version()}"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_describe_python_says_how_the_interpreter_was_built() -> None:
    # Either "configured with" or "without" names each speed option: never silently left out.
    build = describe_python()
    assert "--enable-optimizations" in build and "--with-lto" in build
