"""What the figures were measured on: CPU, cores, memory, software versions, load."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from detector import native
from detector.embedded import broker_binary

CPUINFO = Path("/proc/cpuinfo")


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


def describe_machine(redis_version: str, broker: str) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(memory.total / 2**30, 1),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "redis": redis_version,
        "broker": broker,
        "kafka_python": _version("kafka-python"),
        "redis_py": _version("redis"),
        "river": _version("river"),
        "build": native.build_label(),
    }
