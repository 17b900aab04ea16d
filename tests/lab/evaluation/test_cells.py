"""One draw scored per campaign family x variant and per honest family, on a hand-made draw."""

from __future__ import annotations

import pytest

from detector_lab.evaluation.cells import CampaignCell, DrawScore, score_draw
from detector_lab.evaluation.scoring import evaluate
from tests.lab.evaluation.handmade import ALERTS, score


def _cells(score: DrawScore) -> dict[tuple[str, str], CampaignCell]:
    return {(c.family, c.variant): c for c in score.campaigns}


def test_campaign_cells_split_family_by_variant() -> None:
    cells = _cells(score())
    assert set(cells) == {("hydra", "none"), ("hydra", "language:zh"), ("low_and_slow", "none")}
    hydra = cells[("hydra", "none")]
    assert (hydra.accounts, hydra.flagged, hydra.grouped, hydra.recall) == (2, 2, 2, 1.0)
    assert hydra.delay_median_s == pytest.approx((50.0 + 250.0) / 2)  # from first events at 100
    assert hydra.events_before_detection_median == pytest.approx((1 + 3) / 2)
    assert hydra.purity == 1.0 and hydra.adjusted_rand_index == 1.0
    assert hydra.pivoted and hydra.pivot_delay_h == 2.0
    zh = cells[("hydra", "language:zh")]
    assert (zh.flagged, zh.grouped, zh.delay_median_s, zh.purity) == (0, 0, None, None)
    assert not zh.pivoted and zh.pivot_delay_h is None


def test_a_campaign_alert_mixing_honest_accounts_lowers_purity() -> None:
    slow = _cells(score())[("low_and_slow", "none")]
    assert slow.recall == 0.5 and slow.grouped == 1
    assert slow.purity == 0.5 and slow.adjusted_rand_index is not None


def test_honest_cells_count_flags_and_the_alert_types_behind_them() -> None:
    honest = {h.family: h for h in score().honest}
    assert honest["individuals"].fpr == 0.0 and honest["individuals"].flagged_by == {}
    batch = honest["enterprise_batch"]
    assert batch.fpr == 1.0
    assert list(batch.flagged_by.items()) == [("template_reuse", 1), ("volume_spike", 1)]


def test_draw_totals_come_from_the_scenario_scoring() -> None:
    s = score()
    assert (s.draw, s.seed, s.accounts, s.alerts, s.events) == (0, 7, 8, len(ALERTS), 32)
    assert s.recall == pytest.approx(3 / 5, abs=1e-4) and s.benign_fpr == pytest.approx(
        1 / 3, abs=1e-4
    )


def test_labels_without_family_fall_back_to_the_group() -> None:
    labels = {"a": {"label": "malicious", "group": "g"}, "b": {"label": "benign", "group": "users"}}
    times = {"a": [1.0], "b": [1.0]}
    e = evaluate([], labels, times)
    s = score_draw(0, 1, [], labels, times, {}, None, e)
    assert [(c.family, c.variant) for c in s.campaigns] == [("g", "none")]
    assert [h.family for h in s.honest] == ["users"]
