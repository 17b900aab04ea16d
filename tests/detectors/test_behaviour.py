"""The behaviour detector on crafted behaviour: which finding, which severity, what reasons."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from detector.config import BehaviourSettings
from detector.detectors.behaviour import (
    BASELINE_KEYS,
    BehaviourDetector,
    FeatureBaselines,
    harvest_shape,
)
from detector.state.account import Distinct, Snapshot

QUIET = {
    "dup": 0.05, "reasoning": 0.0, "stepwise": 0.0, "rubric": 0.0, "rewrite": 0.0, "coding": 0.0,
    "tool_use": 0.0, "harvest": 0.0, "at_limit": 0.02, "single_turn": 0.4, "stream_off": 0.2,
    "fixed_temperature": 0.3, "system_reuse": 0.0, "out_in_ratio": 2.0, "gap_log_std": 1.5,
    "hour_flatness": 0.6, "template_chain": 0.0, "template_chain_max": 2.0, "templates_seen": 40.0,
    "top_template_share": 0.05,
}  # fmt: skip


def _snap(events: int = 100, **behaviour: float) -> Snapshot:
    return Snapshot(
        "acct", "ev", 1000.0, events, 0.0, 86400.0, (1.0, 30.0, 300.0), (1.0, 1.0, 1.0), 30.0,
        Distinct(1, 1, 1), None, False, {**QUIET, **behaviour},
    )  # fmt: skip


def _detector(**settings: object) -> BehaviourDetector:
    return BehaviourDetector(BehaviourSettings(**settings), FeatureBaselines(min_samples=1))


def test_honest_behaviour_gives_nothing() -> None:
    assert _detector().evaluate(_snap(), {}) is None


def test_reasoning_harvester_is_high_when_allowed_and_low_by_default() -> None:
    snap = _snap(reasoning=0.9, harvest=0.95, dup=0.9, at_limit=0.7, single_turn=1.0, stream_off=1.0,
                 fixed_temperature=1.0, template_chain_max=40.0)  # fmt: skip
    default = _detector().evaluate(snap, {})
    assert default is not None and default.severity == "low" and default.score >= 0.75
    context: dict = {}
    finding = _detector(max_severity="high").evaluate(snap, context)
    assert finding is not None and finding.severity == "high"
    assert finding.type in {"reasoning_elicitation", "capability_harvest"}
    assert any("internal reasoning" in r or "harvestable" in r for r in finding.reasons)
    assert finding.evidence["profile"]["reasoning"] == 0.9
    assert context["behaviour"]["harvest_shape"] == harvest_shape(
        snap.behaviour, BehaviourSettings().shape_weights
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


SHARE = st.floats(0.0, 1.0)
BASELINE_SAMPLE = st.fixed_dictionaries({k: SHARE for k in BASELINE_KEYS})


@given(
    shares=st.fixed_dictionaries(
        {k: SHARE for k in QUIET if k not in ("out_in_ratio", "gap_log_std")}
    ),
    chain=st.integers(0, 200),
    learned=st.lists(BASELINE_SAMPLE, max_size=4),
    later=st.lists(BASELINE_SAMPLE, min_size=1, max_size=4),
)
def test_reasons_read_later_are_the_reasons_written_at_evaluation(
    shares: dict[str, float],
    chain: int,
    learned: list[dict[str, float]],
    later: list[dict[str, float]],
) -> None:
    """What ``evaluate`` defers (``Reasons``) is its definition, ``reasons``, run at evaluation:
    read after the baselines learned more, the text is still that."""
    baselines = FeatureBaselines(min_samples=2)
    for sample in learned:
        baselines.learn(sample)
    detector = BehaviourDetector(BehaviourSettings(), baselines)
    snap = _snap(**{**shares, "template_chain_max": float(chain)})
    finding = detector.evaluate(snap, {})
    assume(finding is not None)
    assert finding is not None
    written_now = detector.reasons(
        finding.type, snap, finding.evidence["harvest_shape"], dict(baselines.medians())
    )
    for sample in later:
        baselines.learn(sample)
    assert list(finding.reasons) == list(written_now)
    assert finding.reasons == written_now and len(finding.reasons) == len(written_now)
