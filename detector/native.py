"""The optional mypyc build of the per-event hot path (``make compiled``).

mypyc compiles these modules, unchanged, to C extensions placed beside their sources; Python
then imports the extension in place of the ``.py``. The detector behaves the same either way
(the tests pass on both); the compiled build spends about a quarter less CPU per event. An
extension older than its source is the old code (and one left from an earlier list of modules
fails to load), so workers warn and the tests refuse to start.
``python -m detector.native --build`` compiles them (``make compiled``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import time
from pathlib import Path

# What a worker runs per event and per batch: decoding, feature extraction, account state,
# the detectors, campaign linking and the pipeline that drives them; nearly all of its Python
# time outside kafka-python, redis-py and river. Each must pass mypy: mypyc compiles from the
# types. No closures in them: a compiled closure and its environment refer to each other, so
# whatever it holds waits for a full garbage collection (the store's once held every batch's
# write, ~240 B per event). Module constants they read per event are ``Final``: compiled, any
# other module-level name is a dict look-up at each use (``Final`` ones are C statics, or
# folded in when literal).
MODULES = (
    "detector.events",
    "detector.decode",
    "detector.features.text",
    "detector.features.intent",
    "detector.features.request",
    "detector.state.profile",
    "detector.state.account",
    "detector.state.campaigns",
    "detector.io.roundtrip",
    "detector.io.account_store",
    "detector.io.campaign_store",
    "detector.detectors.behaviour",
    "detector.detectors.anomaly",
    "detector.detectors.volume",
    "detector.detectors.campaign",
    "detector.detectors.suite",
    "detector.alerting",
    "detector.pipeline",
)
RUNTIME = "detector.native_runtime"  # the compiled group's name
RUNTIME_MODULE = f"{RUNTIME}__mypyc"  # mypyc's shared library for it, beside the modules
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def source_path(module: str, root: Path = _PACKAGE_ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def compiled_modules() -> list[str]:
    """The modules of ``MODULES`` that are loaded from a compiled extension."""
    out = []
    for name in MODULES:
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            out.append(name)
    return out


def extensions(root: Path = _PACKAGE_ROOT) -> list[tuple[str, Path]]:
    """Every compiled extension in the package under ``root``, the shared runtime and any
    left from an earlier list of modules included: (module, file)."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    out = []
    for built in sorted((root / "detector").rglob("*")):
        # The longest suffix that fits: ".so" also ends ".cpython-311-x86_64-linux-gnu.so".
        suffix = next((s for s in suffixes if built.name.endswith(s)), None)
        if suffix is not None:
            module = built.relative_to(root).as_posix().removesuffix(suffix).replace("/", ".")
            out.append((module, built))
    return out


def stale_extensions(root: Path = _PACKAGE_ROOT) -> list[str]:
    """Modules whose compiled extension is not what their source says: older than it, or
    left from an earlier list of modules (it would fail to load). Looks at the files only."""
    return [
        name
        for name, built in extensions(root)
        if name != RUNTIME_MODULE
        and (name not in MODULES or built.stat().st_mtime < source_path(name, root).stat().st_mtime)
    ]


def build_label() -> str:
    """``"mypyc (16 of 16 modules)"`` or ``"interpreted"``: for logs and reports."""
    done = compiled_modules()
    return f"mypyc ({len(done)} of {len(MODULES)} modules)" if done else "interpreted"


def build(root: Path = _PACKAGE_ROOT) -> None:
    """Compile ``MODULES`` in place under ``root`` (``make compiled``). Needs mypy (the dev
    extra) and a C compiler. The extensions' shared runtime goes inside the package, so an
    editable install finds it from any working directory."""
    from mypyc.build import mypycify  # build-time only: not a dependency of the detector
    from setuptools import setup

    os.chdir(root)
    sources = [str(source_path(m, root).relative_to(root)) for m in MODULES]
    setup(
        name="detector-native",
        script_args=["--quiet", "build_ext", "--inplace"],
        ext_modules=mypycify(sources, group_name=RUNTIME),
    )
    # An unchanged module is not rebuilt, and its extension is copied in place with the old
    # build's time: mark them all as built now, from these sources.
    for _, built in extensions(root):
        built.touch()


def main(argv: list[str]) -> None:
    """For the Makefile: ``--build`` compiles; ``--built`` lists the extensions, paths
    relative to the project root, for ``make uncompiled`` to remove."""
    if argv == ["--build"]:
        started = time.monotonic()
        build()
        sys.stdout.write(f"{build_label()}, built in {time.monotonic() - started:.0f} s\n")
    elif argv == ["--built"]:
        found = [built.relative_to(_PACKAGE_ROOT) for _, built in extensions()]
        sys.stdout.write("".join(f"{path}\n" for path in found))
    else:
        sys.exit("usage: python -m detector.native --build | --built")


if __name__ == "__main__":
    main(sys.argv[1:])
