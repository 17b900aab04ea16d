from __future__ import annotations

from detector.bench.parallel import measure_parallel


def test_each_trial_runs_one_loop_per_process_and_gives_a_speedup() -> None:
    run = measure_parallel(2, trials=3, iterations=20_000)
    assert (run.processes, run.iterations) == (2, 20_000)
    # Trials whose loops shared a process are tried again; on a busy machine all three
    # attempts of a trial may, so up to every trial can be missing, never more.
    assert 0 < len(run.speedups) <= 3
    assert all(s > 0 for s in run.speedups)
