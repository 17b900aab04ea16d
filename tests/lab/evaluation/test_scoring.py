"""Scoring alerts against labels, on crafted inputs."""

from __future__ import annotations

import pytest

from detector_lab.evaluation.scoring import adjusted_rand_index, evaluate, quantile

LABELS = {
    "b1": {"label": "benign", "group": "users"},
    "b2": {"label": "benign", "group": "users"},
    "b3": {"label": "benign", "group": "batch"},
    "m1": {"label": "malicious", "group": "hydra"},
    "m2": {"label": "malicious", "group": "hydra"},
    "m3": {"label": "malicious", "group": "slow"},
}
TIMES = {a: [100.0, 200.0, 300.0, 400.0] for a in LABELS}


def _alert(subject: str, severity: str, ts: float, score: float = 0.7, **extra) -> dict:
    return {
        "subject_type": "account",
        "subject_id": subject,
        "type": "t",
        "severity": severity,
        "ts": ts,
        "score": score,
        **extra,
    }


def test_precision_recall_and_rates() -> None:
    alerts = [
        _alert("m1", "high", 250.0),
        _alert("m1", "medium", 150.0),  # the earliest qualifying alert counts
        _alert("m2", "low", 120.0),  # low never flags
        _alert("b3", "medium", 300.0),
    ]
    e = evaluate(alerts, LABELS, TIMES)
    assert (e.true_positives, e.false_positives, e.false_negatives) == (1, 1, 2)
    assert e.precision == 0.5 and e.recall == pytest.approx(1 / 3, abs=1e-4)
    assert e.benign_fpr == pytest.approx(1 / 3, abs=1e-4)
    hydra = next(g for g in e.groups if g.group == "hydra")
    assert hydra.flagged == 1 and hydra.rate == 0.5
    assert hydra.delay_median_s == 50.0  # 150 - first event at 100
    assert hydra.events_before_detection_median == 1.0
    assert next(g for g in e.groups if g.group == "users").delay_median_s is None


def test_campaign_grouping_purity_and_ari() -> None:
    alerts = [
        {"subject_type": "campaign", "subject_id": "c1", "type": "coordinated_cluster", "severity": "high",
         "ts": 1.0, "score": 0.9, "accounts": ["m1", "m2"]},
        {"subject_type": "campaign", "subject_id": "c2", "type": "coordinated_cluster", "severity": "high",
         "ts": 1.0, "score": 0.9, "accounts": ["m3", "b1"]},
    ]  # fmt: skip
    grouping = evaluate(alerts, LABELS, TIMES).campaign_grouping
    assert grouping is not None
    assert grouping["purity"] == 0.75 and grouping["campaigns"] == 2


def test_a_pivot_is_credited_to_the_campaign_of_the_accounts_it_lists() -> None:
    """A campaign of two groups, mostly hydra: the group that moved is the slow one."""
    cluster = {
        "subject_type": "campaign",
        "subject_id": "c1",
        "type": "coordinated_cluster",
        "severity": "high",
        "ts": 1.0,
        "score": 0.9,
        "accounts": ["m1", "m2", "m3"],
    }
    moved = {
        **cluster,
        "type": "model_pivot",
        "ts": 3601.0,
        "accounts": ["m3"],
        "evidence": {"model": "new"},
    }
    unlisted = {**moved, "ts": 7201.0, "accounts": []}
    pivots = evaluate([cluster, moved, unlisted], LABELS, TIMES, release_ts=1.0).model_pivots
    assert [(p["true_campaign"], p["hours_after_release"]) for p in pivots] == [
        ("slow", 1.0), ("hydra", 2.0)
    ]  # fmt: skip


def test_no_campaign_alerts_means_no_grouping_numbers() -> None:
    assert evaluate([], LABELS, TIMES).campaign_grouping is None


def test_quantile_and_ari_edges() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0], 0.9) == 3.0
    assert adjusted_rand_index(["a", "b", "c"], ["x", "y", "z"]) == 1.0
    assert adjusted_rand_index(["a", "a", "a", "b"], ["x", "x", "x", "y"]) == 1.0
