"""A suite's quality matrix written out: ``report.json``, ``report.md`` and heatmaps."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from detector_lab.evaluation.cells import DrawScore
from detector_lab.evaluation.matrix import Matrix, Stat, TargetResult, Targets, targets

HOUR_S = 3600.0
CAVEAT = (
    "A simulator written beside the detector measures the detector's own assumptions: these "
    "numbers cannot show recall on adversaries or honest traffic nobody modelled, real prompt "
    "and timing distributions, or how operators adapt once the detector acts on them; the "
    "held-out `test` suite only guards against tuning to the draws that were looked at."
)


def _draw_doc(s: DrawScore) -> dict[str, Any]:
    doc = asdict(s)  # plus each cell's derived rate, for readers of the JSON
    for c, d in zip(s.campaigns, doc["campaigns"], strict=True):
        d["recall"] = round(c.recall, 4)
    for h, d in zip(s.honest, doc["honest"], strict=True):
        d["fpr"] = round(h.fpr, 4)
    return doc


def targets_doc(scores: Sequence[DrawScore], t: Targets | None = None) -> dict[str, Any]:
    t = t or Targets()
    results = targets(scores, t)
    return {
        "passed": all(r.passed for r in results),
        "thresholds": asdict(t),
        "criteria": [asdict(r) for r in results],
    }


def write_json(
    matrix: Matrix, scores: Sequence[DrawScore], meta: dict[str, Any], path: Path
) -> None:
    doc = {
        "meta": meta,
        "targets": targets_doc(scores),
        "matrix": asdict(matrix),
        "draws": [_draw_doc(s) for s in scores],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


# --- Markdown --------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _hours(x: float) -> str:
    return f"{x:.1f} h"


def duration(seconds: float) -> str:
    """Event-time delays span seconds to days: a unit that keeps two figures.

    >>> [duration(s) for s in (42.0, 750.0, 9000.0)]
    ['42 s', '12 min', '2.5 h']
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 1.5 * HOUR_S:
        return f"{seconds / 60:.0f} min"
    return _hours(seconds / HOUR_S)


def _num(x: float) -> str:
    return f"{x:.0f}"


def _two(x: float) -> str:
    return f"{x:.2f}"


def cell(stat: Stat, fmt: Callable[[float], str]) -> str:
    """``median [worst #draw]``; ``—`` where the draw had nothing to measure.

    >>> cell(Stat(0.8, 0.5, 3, 4), lambda x: f"{x:.1f}")
    '0.8 [0.5 #3]'
    >>> cell(Stat(0.8, None, 2, 3, missing=2), lambda x: f"{x:.1f}")
    '0.8 [— ×2 #2]'
    >>> cell(Stat(None, None, None, 0), str)
    '-'
    """
    if stat.draws == 0 and stat.missing == 0:
        return "-"
    median = "—" if stat.median is None else fmt(stat.median)
    if stat.worst is None:
        times = f" ×{stat.missing}" if stat.missing > 1 else ""
        return f"{median} [—{times} #{stat.worst_draw}]"
    return f"{median} [{fmt(stat.worst)} #{stat.worst_draw}]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _seeds(seeds: list[int]) -> str:
    """A run of consecutive seeds (a suite's draws) as its ends.

    >>> _seeds([7, 8, 9]), _seeds([7, 9]), _seeds([7])
    ('7–9', '7, 9', '7')
    """
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _draw_range(draws: Sequence[int]) -> str:
    if not draws:
        return "none"
    return f"{draws[0]}" if len(draws) == 1 else f"{draws[0]}–{draws[-1]}"


# How each criterion reads: its target, its measured value, and what a failure is called.
_TARGET_FORMS: dict[str, tuple[str, Callable[[float], str], str]] = {
    "family_detection": ("≥ {} of each family's accounts", _pct, "(family, draw) pairs fail"),
    "recall_median": ("≥ {}", lambda x: f"{x:.1%}", "draws below"),
    "benign_fpr": ("≤ {}", lambda x: f"{x:.2%}", "draws fail"),
    "family_fpr": ("≤ {} each family", lambda x: f"{x:.2%}", "families fail"),
    "grouping_ari": ("≥ {}", _two, "draws fail"),
    "honest_in_campaigns": ("≤ {} honest", _pct, "alerts fail"),
    "pivot_alerts": ("≤ {}", _hours, "campaigns fail"),
}


def target_row(r: TargetResult) -> str:
    """One row of the targets table.

    >>> target_row(TargetResult("grouping_ari", "campaign grouping ARI", 0.9, 0.8, False, 1,
    ...                         ["#2 (0.80)"]))
    '| campaign grouping ARI | ≥ 0.90 | 0.80; draws fail: 1 (#2 (0.80)) | **FAIL** |'
    """
    target, fmt, failing = _TARGET_FORMS[r.key]
    measured = "—" if r.value is None else fmt(r.value)
    if r.note:
        measured += f" ({r.note})"
    if r.failures:
        shown = ", ".join(r.examples) + (", …" if r.failures > len(r.examples) else "")
        measured += f"; {failing}: {r.failures} ({shown})"
    verdict = "PASS" if r.passed else "**FAIL**"
    return f"| {r.criterion} | {target.format(fmt(r.target))} | {measured} | {verdict} |"


def _targets_table(scores: Sequence[DrawScore]) -> list[str]:
    return [
        "## Targets (issue 30), worst draw unless stated",
        "",
        "| criterion | target | measured | PASS/FAIL |",
        "|---|---|---|---|",
        *(target_row(r) for r in targets(scores)),
    ]


def _margin(stats: dict[str, Stat], what: str) -> list[str]:
    rows = [f"| {key} | {st.draws} | {cell(st, _pct)} |" for key, st in stats.items()]
    return [f"| {what} | draws | recall |", "|---|---|---|", *rows]


def markdown(
    matrix: Matrix, scores: Sequence[DrawScore], meta: dict[str, Any], plots: Sequence[str]
) -> str:
    m = matrix
    seeds = _seeds([s.seed for s in scores])
    lines = [
        f"# Evaluation: suite `{meta.get('suite')}`",
        "",
        f"Suite `{meta.get('suite')}` (phrase half {meta.get('half')}), {_plural(len(scores), 'draw')} "
        f"(draws {_draw_range(m.draws)}; seeds {seeds}), scale {meta.get('scale')}; detector "
        f"{meta.get('detector_version')}; {sum(s.events for s in scores):,} events and "
        f"{sum(s.accounts for s in scores):,} accounts in all; {meta.get('seconds', 0):,.0f} s; "
        f"generated {meta.get('generated_at')}.",
        "",
        f"**Caveat.** {CAVEAT}",
        "",
        "An account counts as flagged when it is the subject of an account alert of severity "
        "medium or above. Every cell reads `median [worst #draw]`: the median over the draws in "
        "which the row appears, then the worst draw's value and index. `—` marks a draw with "
        "nothing to measure (no account flagged, no campaign alert, no pivot alert), which counts "
        "as the worst.",
        "",
        "| all draws | median [worst #draw] |",
        "|---|---|",
        f"| recall (campaign accounts flagged) | {cell(m.recall, _pct)} |",
        f"| benign false-positive rate | {cell(m.benign_fpr, lambda x: f'{x:.2%}')} |",
        f"| precision | {cell(m.precision, _two)} |",
        "",
        *_targets_table(scores),
        "",
        "## Campaigns: family × variant",
        "",
        "Recall: share of the row's malicious accounts flagged. Delay: median event time from an "
        "account's first event to its first flag; events: how many events that took. Grouped: "
        "share of accounts named by a campaign alert; purity and adjusted Rand index: of the "
        "campaign alerts that named the row's accounts, against the true campaigns. Pivot: hours "
        "from the newest model's release to the first `model_pivot` alert on the campaign, over "
        "the draws in which it moved traffic to that model.",
        "",
        "| family | variant | draws | accounts | recall | delay | events before detection "
        "| grouped | purity | ARI | pivot delay |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in m.campaigns:
        lines.append(
            f"| {r.family} | {r.variant} | {r.draws} | {r.accounts:,} | {cell(r.recall, _pct)} "
            f"| {cell(r.delay_s, duration)} | {cell(r.events_before_detection, _num)} "
            f"| {cell(r.grouped, _pct)} | {cell(r.purity, _two)} "
            f"| {cell(r.adjusted_rand_index, _two)} | {cell(r.pivot_delay_h, _hours)} |"
        )
    if not m.campaigns:
        lines.append("| (no campaigns) | | | | | | | | | | |")
    lines += [
        "",
        "Recall pooled over a family's variants, and over the families a variant was drawn "
        "with (a combined variant counts for each of its parts):",
        "",
        *_margin(m.by_family, "family"),
        "",
        *_margin(m.by_variant, "variant"),
    ]
    lines += [
        "",
        "## Honest families",
        "",
        "False-positive rate: share of the family's accounts flagged; flagged by: the alert types "
        "of those flags, as accounts summed over draws.",
        "",
        "| family | draws | accounts | false-positive rate | flagged by |",
        "|---|---|---|---|---|",
    ]
    for h in m.honest:
        by = ", ".join(f"{t} {n}" for t, n in h.flagged_by.items()) or "-"
        lines.append(
            f"| {h.family} | {h.draws} | {h.accounts:,} | {cell(h.fpr, lambda x: f'{x:.2%}')} | {by} |"
        )
    lines += [
        "",
        "## Draws",
        "",
        "| draw | seed | events | accounts | alerts | recall | benign FPR | precision | purity "
        "| ARI | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        purity = "-" if s.purity is None else f"{s.purity:.2f}"
        ari = "-" if s.adjusted_rand_index is None else f"{s.adjusted_rand_index:.2f}"
        lines.append(
            f"| {s.draw} | {s.seed} | {s.events:,} | {s.accounts:,} | {s.alerts:,} "
            f"| {s.recall:.1%} | {s.benign_fpr:.2%} | {s.precision:.2f} | {purity} | {ari} "
            f"| {s.seconds:.0f} |"
        )
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


# --- heatmaps ----------------------------------------------------------------------------------


def _heatmap(
    ax: Any,
    values: list[list[float]],
    rows: Sequence[str],
    cols: Sequence[str],
    labels: list[list[str]],
    cmap: str,
    vmax: float,
) -> Any:
    import numpy as np

    data = np.ma.masked_invalid(np.array(values, dtype=float))
    image = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_facecolor("0.85")  # a combination that never occurred
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            if text:
                r, g, b, _ = image.cmap(image.norm(values[i][j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # light text on a dark cell
                colour = "white" if dark else "black"
                size = 8 if len(cols) <= 16 else 6.5  # many draws: narrow cells
                ax.text(j, i, text, ha="center", va="center", fontsize=size, color=colour)
    return image


def plots(matrix: Matrix, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    # Variants down, families across: a suite has a few families and dozens of variants.
    families = sorted({r.family for r in matrix.campaigns})
    variants = sorted({r.variant for r in matrix.campaigns}, key=lambda v: (v != "none", v))
    by_key = {(r.family, r.variant): r for r in matrix.campaigns}
    values, labels = [], []
    for v in variants:
        row_v, row_l = [], []
        for f in families:
            r = by_key.get((f, v))
            median = r.recall.median if r else None
            row_v.append(math.nan if median is None else median)
            row_l.append(cell(r.recall, _pct) if r else "")
        values.append(row_v)
        labels.append(row_l)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.4 * len(families) + 4), max(3.0, 0.32 * len(variants) + 1.8))
    )
    if families:
        image = _heatmap(ax, values, variants, families, labels, "RdYlGn", 1.0)
        fig.colorbar(image, ax=ax, label="recall, median over draws")
    ax.set_xlabel("campaign family")
    ax.set_ylabel("variant")
    ax.set_title("Recall per campaign family × variant: median [worst #draw]")
    written.append(_save(plt, fig, out, "recall_matrix.png"))

    draws = [str(d) for d in matrix.draws]
    honest = [h.family for h in matrix.honest]
    values, labels = [], []
    for h in matrix.honest:
        fprs = [h.fpr_by_draw.get(d) for d in matrix.draws]
        values.append([math.nan if x is None else x for x in fprs])
        labels.append(["" if x is None else f"{x:.0%}" for x in fprs])
    top = max((x for row in values for x in row if not math.isnan(x)), default=0.0)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.6 * len(draws) + 3), max(3.0, 0.5 * len(honest) + 1.5))
    )
    if honest:
        image = _heatmap(ax, values, honest, draws, labels, "Reds", max(0.05, top))
        fig.colorbar(image, ax=ax, label="false-positive rate")
    ax.set_xlabel("draw")
    ax.set_title("False-positive rate per honest family and draw")
    written.append(_save(plt, fig, out, "honest_fpr.png"))
    return written


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name
