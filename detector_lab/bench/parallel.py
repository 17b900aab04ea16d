"""How much faster this machine runs N CPU-bound processes than one: the yardstick for 1 -> N workers.

Cores shared with other tenants, or hyper-threads of one core, give less than N times one.
The bench measures it with a plain Python loop in N processes, one alone, all at once, one
alone again, so that a reader can tell the detector's own scaling from the machine's.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass
from threading import Barrier

ITERATIONS = 2_000_000  # a few tenths of a second of one core per loop on the bench machine
TRIALS = 10
TIMEOUT_S = 120.0  # a pool process that died would otherwise leave the bench waiting forever

_start: Barrier | None = None  # in each pool process: where the loops of a group start together


def _hold(barrier: Barrier) -> None:
    global _start
    _start = barrier


def spin(iterations: int, together: bool = False) -> float:
    """A CPU-bound pure-Python loop (integer arithmetic, a small dict); its seconds. With
    ``together``, in a pool process, it starts once every process of the pool is at its start.

    >>> spin(1000) >= 0
    True
    """
    if together:
        assert _start is not None, "spin(together=True) runs in measure_parallel's pool"
        _start.wait(TIMEOUT_S)
    started = time.perf_counter()
    total, table = 0, {}
    for i in range(iterations):
        total += i * i % 7
        table[i & 1023] = total
    return time.perf_counter() - started


def speedup(alone_s: list[float], together_s: list[float]) -> float:
    """Work done per second by loops run at once over that of one alone (the mean of the
    loops run alone, before and after): the slowest loop of the group bounds it.

    >>> speedup([1.0], [1.0, 1.0]), speedup([0.9, 1.1], [1.0, 1.25])
    (2.0, 1.6)
    """
    return len(together_s) * statistics.fmean(alone_s) / max(together_s)


@dataclass(frozen=True)
class ParallelRun:
    processes: int
    iterations: int
    loop_s: float  # mean seconds of a loop run alone
    speedups: list[float]  # one per trial


def measure_parallel(
    processes: int, trials: int = TRIALS, iterations: int = ITERATIONS
) -> ParallelRun:
    """``trials`` times: the loop in one process alone, in ``processes`` at once, then alone again.

    Processes are spawned (the bench's Kafka clients run threads, which a fork would copy
    mid-flight) once, and reused by every trial. A group's loops wait for each other at a
    barrier, so each runs in a process of its own and they start together.
    """
    context = multiprocessing.get_context("spawn")
    alone, speedups = [], []
    barrier = context.Barrier(processes)
    with context.Pool(processes, initializer=_hold, initargs=(barrier,)) as pool:

        def one() -> float:
            return float(pool.apply_async(spin, (iterations,)).get(TIMEOUT_S))

        for _ in range(trials):
            before = one()
            group = pool.starmap_async(spin, [(iterations, True)] * processes, chunksize=1)
            together = group.get(TIMEOUT_S)
            after = one()
            alone += [before, after]
            speedups.append(round(speedup([before, after], together), 3))
    return ParallelRun(processes, iterations, round(statistics.fmean(alone), 3), speedups)
