"""The volume rule: young accounts far above the population's hourly median."""

from __future__ import annotations

import pytest

from detector.config import Settings
from detector.detectors.volume import PopulationBaseline, VolumeRule
from detector.state.account import Distinct, Snapshot

S = Settings()
WINDOWS = S.state.windows_s
T = 1_700_000_000.0


def snap(
    last_hour: float,
    *,
    age_s: float | None = 3600.0,
    first_seen: float = T - 3600.0,
    completed_hour: int | None = None,
) -> Snapshot:
    requests = tuple(last_hour if w == 3600 else last_hour / 2 for w in WINDOWS)
    return Snapshot(
        account_id="a",
        event_id="e",
        ts=T,
        events=1000,
        first_seen=first_seen,
        account_age_s=age_s,
        requests=requests,
        tokens=tuple(0.0 for _ in WINDOWS),
        rate_per_hour=last_hour,
        distinct=Distinct(1, 1, 1),
        completed_hour=completed_hour,
        late=False,
    )


def rule(baseline: PopulationBaseline | None = None) -> VolumeRule:
    vs = S.volume_rule
    return VolumeRule(
        vs,
        S.state,
        baseline or PopulationBaseline(vs.baseline_min_samples, vs.baseline_prior_per_hour),
    )


def test_fires_high_for_young_account_far_above_baseline() -> None:
    f = rule().evaluate(snap(500.0), {})  # 50x the prior of 10 per hour
    assert f is not None
    assert f.type == "volume_spike"
    assert f.severity == "high"
    assert 0.5 < f.score < 1.0
    assert f.score == pytest.approx(1 - 0.5 * 10 / 50, abs=1e-4)
    assert f.evidence["requests_1h"] == 500.0
    assert f.evidence["population_median_1h"] == 10.0
    assert f.evidence["ratio"] == 50.0
    assert f.evidence["baseline_samples"] == 0
    assert "500 requests in the last hour" in f.reasons[0]
    assert "created" in f.reasons[1]


def test_medium_between_thresholds() -> None:
    f = rule().evaluate(snap(150.0), {})  # 15x: between ratio_medium 10 and ratio_high 30
    assert f is not None
    assert f.severity == "medium"


def test_not_for_an_old_account() -> None:
    age = S.volume_rule.new_account_max_age_s + 1
    assert rule().evaluate(snap(5000.0, age_s=age), {}) is None


def test_age_falls_back_to_first_seen() -> None:
    young = snap(500.0, age_s=None, first_seen=T - 600)
    old = snap(500.0, age_s=None, first_seen=T - S.volume_rule.new_account_max_age_s - 1)
    f = rule().evaluate(young, {})
    assert f is not None
    assert "first seen" in f.reasons[1]
    # First seen is not created: an old account new to this detector informs only.
    assert f.severity == "low" and f.score > 0.5
    assert rule().evaluate(old, {}) is None


def test_not_below_min_requests_1h() -> None:
    # a tiny baseline makes the ratio huge, but the absolute floor still applies
    baseline = PopulationBaseline(min_samples=1, prior=10.0)
    baseline.learn(1)
    below = S.volume_rule.min_requests_1h - 1
    assert rule(baseline).evaluate(snap(float(below)), {}) is None
    assert rule(baseline).evaluate(snap(float(S.volume_rule.min_requests_1h)), {}) is not None


def test_not_below_ratio_medium() -> None:
    baseline = PopulationBaseline(min_samples=1, prior=10.0)
    baseline.learn(100)
    assert rule(baseline).evaluate(snap(999.0), {}) is None  # 9.99x
    assert rule(baseline).evaluate(snap(1000.0), {}) is not None  # 10x


def test_baseline_prior_then_learned_median() -> None:
    b = PopulationBaseline(min_samples=3, prior=10.0)
    assert b.median == 10.0
    b.learn(100)
    b.learn(200)
    assert b.median == 10.0  # not enough samples yet
    b.learn(300)
    assert b.samples == 3
    assert b.median == 200.0


def test_baseline_median_has_a_floor_of_one() -> None:
    b = PopulationBaseline(min_samples=1, prior=10.0)
    for _ in range(5):
        b.learn(0)
    assert b.median == 1.0


def test_baseline_export_load() -> None:
    a = PopulationBaseline(min_samples=2, prior=10.0)
    for n in (4, 6, 8):
        a.learn(n)
    b = PopulationBaseline(min_samples=2, prior=10.0)
    b.load(a.export())
    assert (b.samples, b.median) == (3, a.median)


def test_learns_completed_hours_unless_flagged() -> None:
    baseline = PopulationBaseline(min_samples=1, prior=10.0)
    r = rule(baseline)
    r.learn(snap(10.0, completed_hour=None), flagged=False)
    assert baseline.samples == 0
    r.learn(snap(10.0, completed_hour=40), flagged=True)
    assert baseline.samples == 0
    r.learn(snap(10.0, completed_hour=40), flagged=False)
    assert baseline.samples == 1
    assert baseline.median == 40.0
