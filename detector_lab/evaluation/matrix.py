"""The quality matrix of a suite: every cell of ``cells`` summarised over the draws in which
it appears, as its median and its worst draw. Pure, no I/O."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from detector_lab.evaluation.cells import NO_VARIANT, CampaignCell, DrawScore, HonestCell, ranked


@dataclass(frozen=True)
class Stat:
    """A cell over draws: the median and the worst draw.

    ``missing`` counts draws where the value is undefined because the detector produced
    nothing to measure (no account flagged, no campaign alert, no pivot alert): such a draw
    is the worst, shown as ``worst=None`` with its ``worst_draw``.
    """

    median: float | None
    worst: float | None
    worst_draw: int | None
    draws: int  # draws with a value
    missing: int = 0


def summarize(values: Sequence[tuple[int, float | None]], higher_is_better: bool) -> Stat:
    """``values``: (draw, value or None) for every draw in which the cell applies.

    >>> summarize([(0, 0.9), (1, 0.5), (2, 0.7)], higher_is_better=True)
    Stat(median=0.7, worst=0.5, worst_draw=1, draws=3, missing=0)
    >>> summarize([(0, 10.0), (1, None)], higher_is_better=False)
    Stat(median=10.0, worst=None, worst_draw=1, draws=1, missing=1)
    """
    present = [(d, v) for d, v in values if v is not None]
    missing = [d for d, v in values if v is None]
    median = round(statistics.median(v for _, v in present), 4) if present else None
    if missing:
        return Stat(median, None, missing[0], len(present), len(missing))
    if not present:
        return Stat(None, None, None, 0, 0)
    sign = 1 if higher_is_better else -1  # the worst is the lowest good or the highest bad
    draw, worst = min(present, key=lambda dv: (sign * dv[1], dv[0]))
    return Stat(median, round(worst, 4), draw, len(present), 0)


@dataclass(frozen=True)
class CampaignRow:
    family: str
    variant: str
    draws: int
    accounts: int  # over all draws
    recall: Stat
    delay_s: Stat
    events_before_detection: Stat
    grouped: Stat  # share of accounts named by a campaign alert
    purity: Stat
    adjusted_rand_index: Stat
    pivot_delay_h: Stat  # over the draws in which the family pivoted


@dataclass(frozen=True)
class HonestRow:
    family: str
    draws: int
    accounts: int
    fpr: Stat
    fpr_by_draw: dict[int, float]
    flagged_by: dict[str, int]  # alert type -> flagged accounts, summed over draws


@dataclass(frozen=True)
class Matrix:
    draws: list[int]
    recall: Stat  # all campaign accounts of a draw, pooled
    benign_fpr: Stat
    precision: Stat
    campaigns: list[CampaignRow] = field(default_factory=list)
    honest: list[HonestRow] = field(default_factory=list)
    # Recall pooled per family (all its variants) and per variant (all families): a cell of
    # the matrix may appear in one or two draws, these margins in many.
    by_family: dict[str, Stat] = field(default_factory=dict)
    by_variant: dict[str, Stat] = field(default_factory=dict)


def variant_parts(variant: str) -> list[str]:
    """The variants a label combines, without the words they chose.

    >>> variant_parts("language:zh+human_pacing")
    ['language', 'human_pacing']
    """
    return [part.split(":", 1)[0] for part in variant.split("+")]


def pooled_recall(
    scores: Sequence[DrawScore], keys: Callable[[CampaignCell], Iterable[str]]
) -> dict[str, Stat]:
    """Per key, each draw's recall over all accounts of the cells carrying it."""
    per_draw: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for s in scores:
        flagged: Counter[str] = Counter()
        accounts: Counter[str] = Counter()
        for c in s.campaigns:
            for key in set(keys(c)):
                flagged[key] += c.flagged
                accounts[key] += c.accounts
        for key in accounts:
            per_draw[key].append((s.draw, flagged[key] / accounts[key]))
    order = sorted(per_draw, key=lambda k: (k != NO_VARIANT, k))
    return {k: summarize(per_draw[k], higher_is_better=True) for k in order}


def aggregate(scores: Sequence[DrawScore]) -> Matrix:
    """Every cell over the draws in which it appears."""
    cells: dict[tuple[str, str], list[tuple[int, CampaignCell]]] = defaultdict(list)
    honest: dict[str, list[tuple[int, HonestCell]]] = defaultdict(list)
    for s in scores:
        for c in s.campaigns:
            cells[(c.family, c.variant)].append((s.draw, c))
        for h in s.honest:
            honest[h.family].append((s.draw, h))
    ordered = sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] != NO_VARIANT, kv[0][1]))
    rows = [_campaign_row(f, v, dc) for (f, v), dc in ordered]  # the plain variant first
    honest_rows = [_honest_row(f, dh) for f, dh in sorted(honest.items())]
    return Matrix(
        draws=[s.draw for s in scores],
        recall=summarize([(s.draw, s.recall) for s in scores], higher_is_better=True),
        benign_fpr=summarize([(s.draw, s.benign_fpr) for s in scores], higher_is_better=False),
        precision=summarize([(s.draw, s.precision) for s in scores], higher_is_better=True),
        campaigns=rows,
        honest=honest_rows,
        by_family=pooled_recall(scores, lambda c: [c.family]),
        by_variant=pooled_recall(scores, lambda c: variant_parts(c.variant)),
    )


def _campaign_row(family: str, variant: str, dc: list[tuple[int, CampaignCell]]) -> CampaignRow:
    return CampaignRow(
        family=family,
        variant=variant,
        draws=len(dc),
        accounts=sum(c.accounts for _, c in dc),
        recall=summarize([(d, c.recall) for d, c in dc], higher_is_better=True),
        delay_s=summarize([(d, c.delay_median_s) for d, c in dc], higher_is_better=False),
        events_before_detection=summarize(
            [(d, c.events_before_detection_median) for d, c in dc], higher_is_better=False
        ),
        grouped=summarize([(d, c.grouped / c.accounts) for d, c in dc], higher_is_better=True),
        purity=summarize([(d, c.purity) for d, c in dc], higher_is_better=True),
        adjusted_rand_index=summarize(
            [(d, c.adjusted_rand_index) for d, c in dc], higher_is_better=True
        ),
        pivot_delay_h=summarize(
            [(d, c.pivot_delay_h) for d, c in dc if c.pivoted], higher_is_better=False
        ),
    )


def _honest_row(family: str, dh: list[tuple[int, HonestCell]]) -> HonestRow:
    by_type: Counter[str] = Counter()
    for _, h in dh:
        by_type.update(h.flagged_by)
    return HonestRow(
        family=family,
        draws=len(dh),
        accounts=sum(h.accounts for _, h in dh),
        fpr=summarize([(d, h.fpr) for d, h in dh], higher_is_better=False),
        fpr_by_draw={d: round(h.fpr, 4) for d, h in dh},
        flagged_by=ranked(by_type),
    )
