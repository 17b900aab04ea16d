"""Cells over draws: the median and the worst draw, and the recall margins."""

from __future__ import annotations

import pytest

from detector_lab.evaluation.cells import DrawScore, HonestCell
from detector_lab.evaluation.matrix import Stat, aggregate, summarize
from tests.lab.evaluation.handmade import ALERTS, score


def test_summarize_median_and_worst_in_both_directions() -> None:
    assert summarize([(0, 0.2), (1, 0.9), (2, 0.5)], higher_is_better=True) == Stat(0.5, 0.2, 0, 3)
    assert summarize([(0, 0.2), (1, 0.9), (2, 0.5)], higher_is_better=False) == Stat(0.5, 0.9, 1, 3)
    # Ties go to the earliest draw; nothing to measure is the worst of all.
    assert summarize([(3, 0.5), (4, 0.5)], higher_is_better=True).worst_draw == 3
    assert summarize([(0, 1.0), (1, None), (2, None)], higher_is_better=True) == Stat(
        1.0, None, 1, 1, missing=2
    )
    assert summarize([], higher_is_better=True) == Stat(None, None, None, 0)


def test_aggregate_takes_each_cell_over_the_draws_it_appears_in() -> None:
    good = score(0)
    missed = [a for a in ALERTS if a["subject_id"] != "h1" and a["type"] != "model_pivot"]
    bad = score(1, missed)  # h1 and the pivot missed
    matrix = aggregate([good, bad])
    assert matrix.draws == [0, 1]
    rows = {(r.family, r.variant): r for r in matrix.campaigns}
    hydra = rows[("hydra", "none")]
    assert (hydra.draws, hydra.accounts) == (2, 4)
    assert hydra.recall == Stat(0.75, 0.5, 1, 2)
    assert hydra.pivot_delay_h == Stat(2.0, None, 1, 1, missing=1)  # pivoted, not detected
    assert hydra.delay_s.worst == 250.0 and hydra.delay_s.worst_draw == 1
    zh = rows[("hydra", "language:zh")]
    assert zh.recall == Stat(0.0, 0.0, 0, 2)
    assert zh.delay_s == Stat(None, None, 0, 0, missing=2)
    assert zh.pivot_delay_h == Stat(None, None, None, 0)  # never pivoted: not applicable
    batch = next(h for h in matrix.honest if h.family == "enterprise_batch")
    assert batch.fpr_by_draw == {0: 1.0, 1: 1.0}
    assert batch.flagged_by == {"volume_spike": 2, "template_reuse": 2}
    assert matrix.recall.worst_draw == 1 and matrix.recall.worst == pytest.approx(0.4)


def test_a_family_missing_from_a_draw_is_summarised_over_the_others() -> None:
    only_first = DrawScore(
        draw=5, seed=1, events=1, accounts=1, alerts=0, precision=0.0, recall=0.0,
        benign_fpr=0.0, purity=None, adjusted_rand_index=None, seconds=0.0, campaigns=[],
        honest=[HonestCell("researchers", 10, 1, {"reasoning_elicitation": 1})],
    )  # fmt: skip
    matrix = aggregate([only_first, score(6)])
    researchers = next(h for h in matrix.honest if h.family == "researchers")
    assert researchers.draws == 1 and researchers.fpr_by_draw == {5: 0.1}


def test_margins_pool_recall_per_family_and_per_variant_part() -> None:
    matrix = aggregate([score(0)])
    assert matrix.by_family["hydra"] == Stat(0.6667, 0.6667, 0, 1)  # 2 of 3 accounts
    assert list(matrix.by_variant) == ["none", "language"]  # "none" first, ":zh" dropped
    assert matrix.by_variant["none"].median == 0.75  # hydra 2/2 and low_and_slow 1/2
    assert matrix.by_variant["language"].median == 0.0
