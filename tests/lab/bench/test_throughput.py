from __future__ import annotations

from detector_lab.bench.throughput import Sample, measured_window, rss_trace


def _s(t: float, committed: int, consumed: tuple[float, ...], rss: int = 1 << 20) -> Sample:
    return Sample(t, committed, consumed, tuple(rss for _ in consumed))


def test_window_waits_for_every_worker_to_consume() -> None:
    samples = [
        _s(0.0, 0, (0, 0)),
        _s(3.0, 900, (1000, 0)),  # the first worker ran alone before the second joined
        _s(5.0, 1500, (1600, 200)),
        _s(9.0, 5000, (3500, 1500)),
    ]
    window = measured_window(samples, 5000)
    assert window is not None
    assert (window.start_s, window.end_s, window.committed_at_start) == (5.0, 9.0, 1500)
    assert window.seconds == 4.0


def test_window_needs_the_end() -> None:
    assert measured_window([_s(1.0, 10, (5,))], 100) is None


def test_tiny_topic_done_in_one_sample() -> None:
    window = measured_window([_s(0.0, 0, (0,)), _s(1.0, 100, (100,))], 100)
    assert window is not None
    # From the sample before: a lower bound of the rate, never an empty window (0 events/s).
    assert (window.start_s, window.seconds, window.committed_at_start) == (0.0, 1.0, 0)
    assert measured_window([_s(1.0, 100, (100,))], 100) is None  # nothing before the end


def test_rss_trace_per_worker_and_tenth() -> None:
    samples = [_s(float(i), i * 10, (1.0, 1.0), (100 + i) << 20) for i in range(11)]
    trace = rss_trace(samples, 100)
    assert len(trace) == 2
    assert trace[0] == [101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0, 108.0, 109.0, 110.0]
