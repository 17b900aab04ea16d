"""What the figures were measured on: CPU, cores, memory, software versions, load."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from detector import native
from detector.embedded import broker_binary

CPUINFO = Path("/proc/cpuinfo")
MAPS = Path("/proc/self/maps")
# The configure options that make CPython itself faster: profile-guided optimisation and
# link-time optimisation (python.org and the official Docker images use both).
SPEED_OPTIONS = ("--enable-optimizations", "--with-lto")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``), else what ``platform`` knows.

    >>> cpu_model("processor : 0\\nmodel name : AMD EPYC 7B13\\n")
    'AMD EPYC 7B13'
    """
    if cpuinfo is None and CPUINFO.exists():
        cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float]:
    with contextlib.suppress(OSError, AttributeError):
        return [round(v, 2) for v in os.getloadavg()]
    return []


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def embedded_broker_version() -> str:
    with contextlib.suppress(Exception):  # a description only: never fail the bench for it
        out = subprocess.run(
            [broker_binary(), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "tansu (version unknown)"
    return "tansu (version unknown)"


def interpreter_build(config_args: str, maps: str) -> str:
    """How this CPython was built, as far as it affects speed: whether the interpreter runs
    from a shared libpython (``maps``: the process's ``/proc/self/maps``) and which of the
    ``SPEED_OPTIONS`` its configure had. Distributions may optimise by other means (Debian's
    interpreter is profile-guided without ``--enable-optimizations`` in its configure).

    >>> interpreter_build("'--prefix=/p' '--enable-shared'", "7f00 r-xp /p/lib/libpython3.11.so.1.0")
    'libpython shared; configured without --enable-optimizations, --with-lto'
    >>> interpreter_build("'--enable-optimizations' '--with-lto'", "")
    'configured with --enable-optimizations, --with-lto'
    """
    shared = "libpython" in maps
    used = [o for o in SPEED_OPTIONS if o in config_args]
    unused = [o for o in SPEED_OPTIONS if o not in config_args]
    parts = ["libpython shared"] if shared else []
    if used:
        parts.append(f"configured with {', '.join(used)}")
    if unused:
        parts.append(f"configured without {', '.join(unused)}")
    return "; ".join(parts)


def describe_python() -> str:
    """``CPython 3.11.7 (<interpreter_build>)``; the version alone off Linux."""
    name = f"{platform.python_implementation()} {platform.python_version()}"
    maps = ""
    with contextlib.suppress(OSError):
        maps = MAPS.read_text(encoding="utf-8", errors="replace")
    if not maps:
        return name
    return f"{name} ({interpreter_build(sysconfig.get_config_var('CONFIG_ARGS') or '', maps)})"


def describe_machine(redis_version: str, broker: str) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(memory.total / 2**30, 1),
        "os": platform.platform(),
        "python": describe_python(),
        "redis": redis_version,
        "broker": broker,
        "kafka_python": _version("kafka-python"),
        "redis_py": _version("redis"),
        "river": _version("river"),
        "build": native.build_label(),
    }
