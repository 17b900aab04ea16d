"""How much faster this machine runs N CPU-bound processes than one: the yardstick for 1 -> N workers.

Cores shared with other tenants, or hyper-threads of one core, give less than N times one.
The bench measures it with a plain Python loop in N processes, one alone, all at once, one
alone again, so that a reader can tell the detector's own scaling from the machine's.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass

ITERATIONS = 2_000_000  # ~0.3 s of one core per loop on the bench machine
TRIALS = 10
ATTEMPTS = 3  # a trial whose loops did not run in N different processes is tried again


def spin(iterations: int) -> tuple[int, float]:
    """A CPU-bound pure-Python loop (integer arithmetic, a small dict): (this pid, its seconds).

    >>> pid, seconds = spin(1000)
    >>> pid > 0 and seconds >= 0
    True
    """
    started = time.perf_counter()
    total, table = 0, {}
    for i in range(iterations):
        total += i * i % 7
        table[i & 1023] = total
    return os.getpid(), time.perf_counter() - started


def speedup(alone_s: list[float], together_s: list[float]) -> float:
    """Work done per second by loops run at once over that of one alone (the mean of the
    loops run alone, before and after): the slowest loop of the group bounds it.

    >>> speedup([1.0], [1.0, 1.0]), speedup([0.9, 1.1], [1.0, 1.25])
    (2.0, 1.6)
    """
    return len(together_s) * sum(alone_s) / len(alone_s) / max(together_s)


@dataclass(frozen=True)
class ParallelRun:
    processes: int
    iterations: int
    speedups: list[float]  # one per trial


def measure_parallel(
    processes: int, trials: int = TRIALS, iterations: int = ITERATIONS
) -> ParallelRun:
    """``trials`` times: the loop in one process alone, in ``processes`` at once, then alone again.

    Processes are spawned (the bench's Kafka clients run threads, which a fork would copy
    mid-flight) once, and reused by every trial.
    """
    speedups = []
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(spin, [1000] * processes, chunksize=1)  # started and warm
        for _ in range(trials):
            for _ in range(ATTEMPTS):
                # One loop alone before and after the group: the machine's speed drifts.
                _, before = pool.apply(spin, (iterations,))
                together = pool.map(spin, [iterations] * processes, chunksize=1)
                _, after = pool.apply(spin, (iterations,))
                if len({pid for pid, _ in together}) == processes:
                    group = [s for _, s in together]
                    speedups.append(round(speedup([before, after], group), 3))
                    break
    return ParallelRun(processes, iterations, speedups)
