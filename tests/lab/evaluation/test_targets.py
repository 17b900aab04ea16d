"""Issue 30's Done-when over hand-made draws: a passing and a failing case per criterion."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detector_lab.evaluation.matrix import (
    TargetResult,
    Targets,
    benign_fpr,
    family_detection,
    family_fpr,
    grouping_ari,
    honest_in_campaigns,
    pivot_alerts,
    recall_median,
    targets,
)
from tests.lab.evaluation.handmade import ALERTS, RELEASE_TS, account, campaign, score

T = Targets()
PIVOT = campaign("c1", ["h1", "h2"], "model_pivot", ts=RELEASE_TS + 2 * 3600, model="new")
CLEAN = [  # every malicious account flagged, no honest one; one campaign alert per campaign
    account("h1", "medium", 150.0),
    account("h2", "high", 350.0),
    account("h3", "high", 200.0),
    account("l1", "high", 250.0),
    account("l2", "critical", 260.0),
    campaign("c1", ["h1", "h2"]),
    campaign("c2", ["l1", "l2"]),
    campaign("c3", ["h3"]),
    PIVOT,
]


def _without(alerts: list[dict], subject: str = "", type_: str = "") -> list[dict]:
    return [a for a in alerts if a["subject_id"] != subject and a["type"] != type_]


def test_defaults_are_the_issue_thresholds() -> None:
    assert Targets() == Targets(0.5, 0.95, 0.003, 0.01, 0.9, 0.05, 6.0)


def test_a_clean_suite_passes_every_criterion() -> None:
    results = targets([score(0, CLEAN), score(1, CLEAN)])
    assert [r.key for r in results] == [
        "family_detection", "recall_median", "benign_fpr", "family_fpr",
        "grouping_ari", "honest_in_campaigns", "pivot_alerts",
    ]  # fmt: skip
    assert all(r.passed and r.failures == 0 for r in results), results


def test_family_detection_needs_half_of_each_family_in_every_draw() -> None:
    ok = family_detection([score(0), score(1, CLEAN)], T)  # hydra 2/3, low_and_slow 1/2
    assert ok.passed and ok.value == 0.5
    bad = family_detection([score(0, CLEAN), score(4, _without(ALERTS, "l1"))], T)
    assert not bad.passed and bad.value == 0.0
    assert (bad.failures, bad.examples) == (1, ["low_and_slow #4 (0%)"])


def test_recall_median_over_draws() -> None:
    three = [score(0), score(1, CLEAN), score(2, CLEAN)]  # 0.6, 1.0, 1.0
    assert recall_median(three, T) == TargetResult(
        "recall_median", "malicious-account recall, median over draws", 0.95, 1.0, True,
        failures=1, examples=["#0 (60.0%)"],  # below, but the median decides
    )  # fmt: skip
    bad = recall_median([score(0), score(1), score(2, CLEAN)], T)
    assert not bad.passed and bad.value == 0.6 and bad.failures == 2
    assert not recall_median([], T).passed  # nothing measured


def test_benign_fpr_in_the_worst_draw() -> None:
    assert benign_fpr([score(0, CLEAN)], T).passed
    bad = benign_fpr([score(0, CLEAN), score(1)], T)  # e1 flagged: 1 of 3 honest
    assert not bad.passed and bad.value == pytest.approx(1 / 3, abs=1e-4)
    assert bad.examples == ["#1 (33.33%)"]


def test_family_fpr_lists_the_failing_families() -> None:
    ok = family_fpr([score(0, CLEAN)], T)
    assert ok.passed and ok.value == 0.0
    bad = family_fpr([score(0, CLEAN), score(1)], T)
    assert not bad.passed and bad.value == 1.0
    assert bad.examples == ["enterprise_batch #1 (100.00%)"]  # individuals never flagged


def test_grouping_ari_in_the_worst_draw() -> None:
    assert grouping_ari([score(0, CLEAN)], T).passed
    mixed = grouping_ari([score(0, CLEAN), score(1)], T)  # c2 merges low_and_slow with e1
    assert not mixed.passed and mixed.value is not None and mixed.value < 0.9
    assert mixed.examples[0].startswith("#1 (")
    accounts_only = [a for a in CLEAN if a["subject_type"] == "account"]
    none = grouping_ari([score(2, accounts_only)], T)  # no campaign alert: nothing grouped
    assert (none.passed, none.value, none.examples) == (False, None, ["#2 (—)"])


def test_no_campaign_alert_may_list_honest_accounts_beyond_five_percent() -> None:
    assert honest_in_campaigns([score(0, CLEAN)], T).passed
    bad = honest_in_campaigns([score(0, CLEAN), score(3)], T)
    assert not bad.passed and bad.value == 0.5
    assert bad.examples == ["#3 c2 coordinated_cluster (1/2)"]
    many = [f"h{i}" for i in range(30)] + ["e1"]  # 1 honest of 31 listed: 3%, within 5%
    diluted = score(0, [*CLEAN, campaign("c9", many)])
    assert diluted.mixed_campaign_alerts[0].honest_share == pytest.approx(1 / 31)
    assert honest_in_campaigns([diluted], T).passed
    assert not honest_in_campaigns([diluted], replace(T, honest_share_max=0.01)).passed


def test_every_campaign_that_moved_needs_a_pivot_alert_in_time() -> None:
    ok = pivot_alerts([score(0, CLEAN)], T)
    assert ok.passed and ok.value == 2.0
    missed = pivot_alerts([score(0, CLEAN), score(1, _without(CLEAN, type_="model_pivot"))], T)
    assert (missed.passed, missed.value, missed.examples) == (False, None, ["hydra/none #1 (—)"])
    late_pivot = replace_pivot(RELEASE_TS + 7 * 3600)
    late = pivot_alerts([score(2, late_pivot)], T)
    assert (late.passed, late.value, late.examples) == (False, 7.0, ["hydra/none #2 (7.0 h)"])
    still = score(3, _without(CLEAN, type_="model_pivot"))
    nobody = [replace(still, campaigns=[replace(c, pivoted=False) for c in still.campaigns])]
    assert pivot_alerts(nobody, T) == TargetResult(
        "pivot_alerts", "model-pivot alert after the release, every campaign that moved",
        6.0, None, True, note="no campaign moved",
    )  # fmt: skip


def replace_pivot(ts: float) -> list[dict]:
    return [*_without(CLEAN, type_="model_pivot"), {**PIVOT, "ts": ts}]
