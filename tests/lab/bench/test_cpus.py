from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from detector_lab.bench.cpus import describe, placed, split

linux_with_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs sched_setaffinity and at least 2 CPUs",
)


def test_workers_take_the_last_cpus_and_the_rest_keep_the_first() -> None:
    assert split([3, 1, 2, 0], 1) == ([3], [0, 1, 2])
    assert split([5, 7, 9], 2) == ([7, 9], [5])


def test_no_placement_without_a_cpu_left_for_the_rest() -> None:
    assert split([0, 1], 2) is None
    assert split([0], 1) is None
    assert describe(None).startswith("shared")


def test_shared_cpus_leave_every_affinity_alone() -> None:
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with placed([os.getpid() + 1_000_000], own=False) as placement:
        assert placement.startswith("shared")
        if before is not None:
            assert os.sched_getaffinity(0) == before


@linux_with_cpus
def test_a_worker_gets_a_cpu_of_its_own_and_everything_is_restored() -> None:
    allowed = os.sched_getaffinity(0)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    seen: dict[str, set[int]] = {}
    try:
        with placed([worker.pid], own=True) as placement:
            own, rest = split(sorted(allowed), 1) or ([], [])
            assert placement.startswith("each worker on a CPU of its own")
            assert os.sched_getaffinity(worker.pid) == set(own)
            assert os.sched_getaffinity(helper.pid) == set(rest)  # another child of the bench
            assert os.sched_getaffinity(0) == set(rest)
            # A thread started meanwhile inherits the bench's CPUs.
            thread = threading.Thread(target=lambda: seen.update(t=os.sched_getaffinity(0)))
            thread.start()
            thread.join()
        assert seen["t"] == set(rest)
        for pid in (0, worker.pid, helper.pid):
            assert os.sched_getaffinity(pid) == allowed
    finally:
        for proc in (worker, helper):
            proc.kill()
            proc.wait()
