"""The quality matrix of a suite: every cell of ``cells`` summarised over the draws in which
it appears, as its median and its worst draw. Pure, no I/O."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

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


# --- targets: the Done-when criteria of issue 30 over a suite's draws -------------------------


@dataclass(frozen=True)
class Targets:
    """The thresholds of issue 30's Done-when, in one place."""

    family_min_recall: float = 0.5  # every family, every draw: this share of its accounts flagged
    recall_median_min: float = 0.95  # malicious-account recall, median over draws
    benign_fpr_max: float = 0.003  # all honest accounts, worst draw
    family_fpr_max: float = 0.01  # each honest family, its worst draw
    ari_min: float = 0.9  # campaign grouping adjusted Rand index, worst draw
    honest_share_max: float = 0.05  # honest accounts among a campaign alert's listed accounts
    pivot_max_h: float = 6.0  # first model_pivot alert after the release, per moved campaign


@dataclass(frozen=True)
class TargetResult:
    """One criterion: ``value`` is the measured number (None: nothing measured, e.g. no
    campaign alert in a draw, which fails); ``failures`` counts the offending items and
    ``examples`` names a few of them."""

    key: str
    criterion: str
    target: float
    value: float | None
    passed: bool
    failures: int = 0
    examples: list[str] = field(default_factory=list)
    note: str = ""  # why a criterion with nothing measured passes


MAX_EXAMPLES = 3


def _or_dash(x: float | None, fmt: str) -> str:
    return "—" if x is None else fmt.format(x)


def _result(
    key: str,
    criterion: str,
    target: float,
    value: float | None,
    failing: Sequence[str],
    note: str = "",
) -> TargetResult:
    """Passes when nothing fails and something was measured (or ``note`` says why not)."""
    return TargetResult(
        key,
        criterion,
        target,
        None if value is None else round(value, 4),
        (value is not None or bool(note)) and not failing,
        len(failing),
        list(failing[:MAX_EXAMPLES]),
        note,
    )


def family_detection(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    """Every campaign family present in a draw has ``family_min_recall`` of its accounts
    flagged in that draw (variants pooled); value: the lowest such share."""
    shares: list[tuple[float, str, int]] = []
    for s in scores:
        flagged: Counter[str] = Counter()
        accounts: Counter[str] = Counter()
        for c in s.campaigns:
            flagged[c.family] += c.flagged
            accounts[c.family] += c.accounts
        shares += [(flagged[f] / n, f, s.draw) for f, n in sorted(accounts.items()) if n]
    failing = [f"{f} #{d} ({r:.0%})" for r, f, d in sorted(shares) if r < t.family_min_recall]
    lowest = min((r for r, _, _ in shares), default=None)
    return _result(
        "family_detection", "every campaign family detected in every draw",
        t.family_min_recall, lowest, failing,
    )  # fmt: skip


def recall_median(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    value = statistics.median(s.recall for s in scores) if scores else None
    failing = [f"#{s.draw} ({s.recall:.1%})" for s in scores if s.recall < t.recall_median_min]
    result = _result(
        "recall_median", "malicious-account recall, median over draws",
        t.recall_median_min, value, failing,
    )  # fmt: skip
    # The median decides; the draws below the target are listed as context.
    return replace(result, passed=value is not None and value >= t.recall_median_min)


def benign_fpr(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    worst = max(scores, key=lambda s: (s.benign_fpr, -s.draw), default=None)
    failing = [f"#{s.draw} ({s.benign_fpr:.2%})" for s in scores if s.benign_fpr > t.benign_fpr_max]
    return _result(
        "benign_fpr", "honest false-positive rate, all honest accounts",
        t.benign_fpr_max, None if worst is None else worst.benign_fpr, failing,
    )  # fmt: skip


def family_fpr(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    """Each honest family's false-positive rate in its worst draw; value: the highest."""
    worst: dict[str, tuple[float, int]] = {}
    for s in scores:
        for h in s.honest:
            if h.accounts and (h.family not in worst or h.fpr > worst[h.family][0]):
                worst[h.family] = (h.fpr, s.draw)
    ranked_worst = sorted(worst.items(), key=lambda kv: (-kv[1][0], kv[0]))
    failing = [f"{f} #{d} ({r:.2%})" for f, (r, d) in ranked_worst if r > t.family_fpr_max]
    value = ranked_worst[0][1][0] if ranked_worst else (0.0 if scores else None)
    return _result(
        "family_fpr", "honest false-positive rate, every honest family",
        t.family_fpr_max, value, failing,
    )  # fmt: skip


def grouping_ari(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    """Campaign grouping ARI in the worst draw; a draw without campaign alerts fails."""
    failing = [
        f"#{s.draw} ({_or_dash(s.adjusted_rand_index, '{:.2f}')})"
        for s in scores
        if s.adjusted_rand_index is None or s.adjusted_rand_index < t.ari_min
    ]
    values = [s.adjusted_rand_index for s in scores]
    value = None if not values or None in values else min(v for v in values if v is not None)
    return _result("grouping_ari", "campaign grouping ARI", t.ari_min, value, failing)


def honest_in_campaigns(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    """No campaign alert (over all draws) whose listed accounts are more than
    ``honest_share_max`` honest; value: the highest honest share of any campaign alert."""
    mixed = sorted(
        ((m.honest_share, s.draw, m) for s in scores for m in s.mixed_campaign_alerts),
        key=lambda x: (-x[0], x[1], x[2].campaign, x[2].ts),
    )
    failing = [
        f"#{d} {m.campaign} {m.type} ({m.honest}/{m.accounts})"
        for share, d, m in mixed
        if share > t.honest_share_max
    ]
    value = mixed[0][0] if mixed else (0.0 if scores else None)
    return _result(
        "honest_in_campaigns", "honest share of any campaign alert's listed accounts, all draws",
        t.honest_share_max, value, failing,
    )  # fmt: skip


def pivot_alerts(scores: Sequence[DrawScore], t: Targets) -> TargetResult:
    """A model_pivot alert within ``pivot_max_h`` of the release for every campaign (family x
    variant of a draw) that moved traffic to the newest model; value: the latest such alert,
    None when one is missing. No campaign moved: nothing to fail."""
    moved = [(s.draw, c) for s in scores for c in s.campaigns if c.pivoted]
    failing = [
        f"{c.family}/{c.variant} #{d} ({_or_dash(c.pivot_delay_h, '{:.1f} h')})"
        for d, c in moved
        if c.pivot_delay_h is None or c.pivot_delay_h > t.pivot_max_h
    ]
    delays = [c.pivot_delay_h for _, c in moved]
    value = None if None in delays else max((d for d in delays if d is not None), default=None)
    return _result(
        "pivot_alerts", "model-pivot alert after the release, every campaign that moved",
        t.pivot_max_h, value, failing, "" if moved else "no campaign moved",
    )  # fmt: skip


def targets(scores: Sequence[DrawScore], t: Targets | None = None) -> list[TargetResult]:
    """Issue 30's Done-when over the draws, in the issue's order (3 is two rows)."""
    t = t or Targets()
    return [
        check(scores, t)
        for check in (
            family_detection, recall_median, benign_fpr, family_fpr,
            grouping_ari, honest_in_campaigns, pivot_alerts,
        )
    ]  # fmt: skip
