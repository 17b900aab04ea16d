"""The behaviour detector on crafted profiles: which finding, which severity, what reasons."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from detector.config import BehaviourSettings
from detector.detectors.behaviour import BehaviourDetector, FeatureBaselines, harvest_shape, round4
from detector.state.account import Distinct, Snapshot

QUIET = {
    "dup": 0.05, "reasoning": 0.0, "stepwise": 0.0, "rubric": 0.0, "rewrite": 0.0, "coding": 0.0,
    "tool_use": 0.0, "harvest": 0.0, "at_limit": 0.02, "single_turn": 0.4, "stream_off": 0.2,
    "fixed_temperature": 0.3, "system_reuse": 0.0, "out_in_ratio": 2.0, "gap_log_std": 1.5,
    "hour_flatness": 0.6, "template_chain": 0.0, "template_chain_max": 2.0, "templates_seen": 40.0,
    "top_template_share": 0.05,
}  # fmt: skip


def _snap(events: int = 100, **profile: float) -> Snapshot:
    return Snapshot(
        "acct", "ev", 1000.0, events, 0.0, 86400.0, (1.0, 30.0, 300.0), (1.0, 1.0, 1.0), 30.0,
        Distinct(1, 1, 1), None, False, {**QUIET, **profile},
    )  # fmt: skip


def _detector() -> BehaviourDetector:
    return BehaviourDetector(BehaviourSettings(), FeatureBaselines(min_samples=1))


def test_honest_profile_gives_nothing() -> None:
    assert _detector().evaluate(_snap(), {}) is None


def test_reasoning_harvester_is_high() -> None:
    snap = _snap(reasoning=0.9, harvest=0.95, dup=0.9, at_limit=0.7, single_turn=1.0, stream_off=1.0,
                 fixed_temperature=1.0, template_chain_max=40.0)  # fmt: skip
    context: dict = {}
    finding = _detector().evaluate(snap, context)
    assert finding is not None and finding.severity == "high"
    assert finding.type in {"reasoning_elicitation", "capability_harvest"}
    assert any("internal reasoning" in r or "harvestable" in r for r in finding.reasons)
    assert finding.evidence["profile"]["reasoning"] == 0.9
    assert context["behaviour"]["harvest_shape"] == harvest_shape(
        snap.profile, BehaviourSettings().shape_weights
    )


def test_batch_job_template_without_harvesting_is_only_low() -> None:
    finding = _detector().evaluate(
        _snap(
            dup=0.98,
            template_chain_max=200.0,
            single_turn=1.0,
            stream_off=1.0,
            fixed_temperature=1.0,
        ),
        {},
    )
    assert finding is not None and finding.type == "template_chain" and finding.severity == "low"


def test_too_few_events_gives_nothing() -> None:
    assert _detector().evaluate(_snap(events=5, reasoning=1.0, harvest=1.0), {}) is None


def test_reasons_quote_the_population_median() -> None:
    baselines = FeatureBaselines(min_samples=2)
    for _ in range(3):
        baselines.learn(QUIET)
    detector = BehaviourDetector(BehaviourSettings(), baselines)
    finding = detector.evaluate(
        _snap(harvest=0.9, coding=0.9, at_limit=0.8, single_turn=1.0, stream_off=1.0), {}
    )
    assert finding is not None and finding.type == "capability_harvest"
    assert (
        "(population median 0%)" in finding.reasons[0]
        and "agentic coding 90%" in finding.reasons[0]
    )


def test_reasons_read_later_quote_the_medians_of_the_evaluation() -> None:
    """Reasons are written when an alert reads them; what the baselines learn meanwhile
    does not change them."""
    baselines = FeatureBaselines(min_samples=2)
    for _ in range(3):
        baselines.learn(QUIET)
    detector = BehaviourDetector(BehaviourSettings(), baselines)
    snap = _snap(harvest=0.9, coding=0.9, at_limit=0.8, single_turn=1.0, stream_off=1.0)
    finding = detector.evaluate(snap, {})
    for _ in range(50):
        baselines.learn({**QUIET, "harvest": 1.0, "dup": 1.0, "at_limit": 1.0})
    assert finding is not None and "(population median 0%)" in finding.reasons[0]
    assert finding.evidence["population_medians"]["harvest"] == 0.0


@given(st.floats(min_value=0.0, max_value=10.0))
def test_round4_is_round_to_four_digits(x: float) -> None:
    assert round4(x) == round(x, 4)


@given(st.integers(0, 100_000))
def test_round4_is_round_to_four_digits_at_and_beside_halves(k: int) -> None:
    # Shares are often multiples of 1/32, so scores land on halves, or an ulp beside one.
    half = (2 * k + 1) / 20_000
    for x in (half, math.nextafter(half, 0.0), math.nextafter(half, math.inf)):
        assert round4(x) == round(x, 4)
