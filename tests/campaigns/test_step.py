"""The group stage's pure parts: the background a worker keeps."""

from __future__ import annotations

from detector.campaigns.step import Background


def test_the_background_counts_an_account_once_an_hour_and_keeps_the_latest() -> None:
    background = Background(size=100)
    background.add("a", [0.0, 10.0, 0.0, 1, 0.0, 0.0])
    background.add("a", [0.0, 600.0, 0.0, 2, 1.0, 1.0])  # the same hour: not again
    assert background.size == 1
    background.add("a", [0.0, 4000.0, 0.0, 3, 1.0, 1.0])
    assert background.size == 2
    for i in range(300):
        background.add(f"b{i}", [1e6, 1e6 + 1, 1e6 - 400 * 86400.0, 5, 0.0, 0.0])
    assert background.size == 100
    population = background.population()
    assert population.median_age_s == 400 * 86400.0 and population.at_limit == 0.0
