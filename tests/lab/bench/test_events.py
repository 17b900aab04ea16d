from __future__ import annotations

from detector_lab.bench.events import cache_name, next_scale
from detector_lab.sim.scenario import load_scenario


def test_next_scale_overshoots_a_little() -> None:
    assert next_scale(0.5, 40_000, 100_000) > 0.5 * 100_000 / 40_000


def test_cache_name_changes_with_the_scenario_and_size() -> None:
    ci = load_scenario("ci")
    assert cache_name(ci, 1000) == cache_name(ci, 1000)
    assert cache_name(ci, 1000) != cache_name(ci, 2000)
    assert cache_name(ci, 1000) != cache_name(ci.model_copy(update={"seed": 8}), 1000)
