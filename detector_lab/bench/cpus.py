"""Where the latency run's processes may run: each worker on a CPU of its own, and what the
bench started besides (itself, the embedded broker and Redis) on the other CPUs.

A sidecar worker is sized and deployed with a CPU of its own; on a bench machine shared with
the load generator and the servers, the scheduler put a worker beside one of them in some
runs and not in others (p99 at half load 267-360 ms shared against 182-230 ms placed, five
interleaved runs each on the 2-core machine). Placing them measures the detector rather
than that draw. Linux only (``sched_setaffinity``); elsewhere the CPUs stay shared.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Sequence

import psutil


def split(cpus: Sequence[int], workers: int) -> tuple[list[int], list[int]] | None:
    """(a CPU for each worker, the CPUs left for the rest), or None when there are not more
    CPUs than workers.

    >>> split([0, 1], 1)
    ([1], [0])
    >>> split([0, 1, 2, 3], 2)
    ([2, 3], [0, 1])
    >>> split([0, 1], 2) is None
    True
    """
    ordered = sorted(cpus)
    if len(ordered) <= workers:
        return None
    return ordered[-workers:], ordered[:-workers]


def describe(placement: tuple[list[int], list[int]] | None) -> str:
    """The placement in words, for the report.

    >>> describe(([1], [0]))
    'each worker on a CPU of its own (CPU 1); the bench and the servers it started on CPU 0'
    >>> describe(None)
    'shared: workers, bench and servers on any CPU'
    """
    if placement is None:
        return "shared: workers, bench and servers on any CPU"
    own, rest = placement
    return (
        f"each worker on a CPU of its own (CPU {', '.join(map(str, own))}); "
        f"the bench and the servers it started on CPU {', '.join(map(str, rest))}"
    )


def _pin(pid: int, cpus: Collection[int]) -> None:
    """Every thread of ``pid`` (the affinity is per thread; threads started later inherit it)."""
    with contextlib.suppress(psutil.Error):
        for thread in psutil.Process(pid).threads():
            with contextlib.suppress(OSError):  # a thread that has just ended
                os.sched_setaffinity(thread.id, cpus)


@contextlib.contextmanager
def placed(workers: Sequence[int], own: bool) -> Iterator[str]:
    """Pin ``workers`` (pids) one to a CPU and this process with its other children to the
    rest, if ``own`` and possible; yields the placement in words; restores all afterwards."""
    if not own or not hasattr(os, "sched_setaffinity"):
        yield describe(None)
        return
    allowed = os.sched_getaffinity(0)
    placement = split(list(allowed), len(workers))
    if placement is None:
        yield describe(None)
        return
    own_cpus, rest = placement
    pinned = set(workers)
    others = [os.getpid()] + [c.pid for c in psutil.Process().children() if c.pid not in pinned]
    try:
        for pid, cpu in zip(workers, own_cpus, strict=True):
            _pin(pid, [cpu])
        for pid in others:
            _pin(pid, rest)
        yield describe(placement)
    finally:
        for pid in [*workers, *others]:
            _pin(pid, allowed)
