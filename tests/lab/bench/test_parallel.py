from __future__ import annotations

from detector_lab.bench.parallel import measure_parallel


def test_every_trial_runs_its_loops_together_and_gives_a_speedup() -> None:
    run = measure_parallel(2, trials=3, iterations=20_000)
    assert (run.processes, run.iterations) == (2, 20_000)
    # The loops of a group meet at a barrier before they start: every trial counts.
    assert len(run.speedups) == 3
    assert all(s > 0 for s in run.speedups) and run.loop_s > 0
