"""The evaluation written out: JSON for machines, Markdown for people, PNG plots for both."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from detector_lab.evaluation.scoring import Evaluation

HOUR_S = 3600.0


def _fmt_hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / HOUR_S:.1f} h"


def write_json(evaluation: Evaluation, meta: dict[str, Any], path: Path) -> None:
    path.write_bytes(
        orjson.dumps({"meta": meta, **evaluation.to_dict()}, option=orjson.OPT_INDENT_2)
    )


def markdown(evaluation: Evaluation, meta: dict[str, Any], plots: list[str]) -> str:
    e = evaluation
    lines = [
        f"# Evaluation: scenario `{meta.get('scenario', '?')}`",
        "",
        f"{meta.get('events', 0):,} events, {meta.get('accounts', 0):,} accounts, seed {meta.get('seed')}, "
        f"scale {meta.get('scale')}; detector {meta.get('detector_version')}; replay "
        f"{meta.get('replay_events_per_s', 0):,.0f} events/s.",
        "",
        "An account counts as flagged when it is the subject of an account alert of severity medium or above.",
        "",
        "| precision | recall | F1 | benign false-positive rate | true pos. | false pos. | false neg. |",
        "|---|---|---|---|---|---|---|",
        f"| {e.precision:.3f} | {e.recall:.3f} | {e.f1:.3f} | {e.benign_fpr:.4f} | {e.true_positives} "
        f"| {e.false_positives} | {e.false_negatives} |",
        "",
        "## Per population and campaign",
        "",
        "| group | label | accounts | events | flagged | rate | delay median | delay p90 | events before detection (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in e.groups:
        before = (
            "-"
            if g.events_before_detection_median is None
            else f"{g.events_before_detection_median:.0f}"
        )
        lines.append(
            f"| {g.group} | {g.label} | {g.accounts} | {g.events:,} | {g.flagged} | {g.rate:.1%} "
            f"| {_fmt_hours(g.delay_median_s)} | {_fmt_hours(g.delay_p90_s)} | {before} |"
        )
    lines += ["", "## Campaign grouping", ""]
    if e.campaign_grouping:
        c = e.campaign_grouping
        lines.append(
            f"{c['accounts']} accounts in {c['campaigns']} campaign alerts: purity {c['purity']:.3f}, "
            f"adjusted Rand index {c['adjusted_rand_index']:.3f} against the true campaigns."
        )
    else:
        lines.append(
            "No campaign alerts were emitted, so purity and adjusted Rand index are not defined."
        )
    lines += ["", "## Model pivots", ""]
    if e.model_pivots:
        lines += [
            f"Newest model `{meta.get('newest_model')}`, released at event time {meta.get('newest_release_ts')}.",
            "",
            "| campaign alert | true campaign | model | hours after release |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {p['campaign_id']} | {p['true_campaign']} | {p['model']} | {p['hours_after_release']} |"
            for p in e.model_pivots
        ]
    else:
        lines.append("No model_pivot alerts.")
    lines += ["", "## Alerts by subject and type", "", "| subject:type | alerts |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in e.alerts_by_type.items()] or ["| (none) | 0 |"]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def plots(
    evaluation: Evaluation,
    alerts: list[dict[str, Any]],
    detection_delays: dict[str, list[float]],
    start_ts: float,
    out: Path,
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [g.group for g in evaluation.groups]
    rates = [g.rate * 100 for g in evaluation.groups]
    colours = ["tab:red" if g.label == "malicious" else "tab:blue" for g in evaluation.groups]
    ax.barh(names, rates, color=colours)
    ax.set_xlabel("accounts flagged (%)")
    ax.set_title("Flagged accounts per population (blue: benign) and campaign (red: malicious)")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    written.append(_save(plt, fig, out, "flagged_by_group.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    groups = [g for g, d in detection_delays.items() if d]
    if groups:
        ax.boxplot(
            [[x / HOUR_S for x in detection_delays[g]] for g in groups], orientation="horizontal"
        )
        ax.set_yticks(range(1, len(groups) + 1), groups)
    else:
        ax.text(
            0.5,
            0.5,
            "no campaign account was detected",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("hours from the account's first event to its first medium+ alert")
    ax.set_title("Detection delay per campaign")
    written.append(_save(plt, fig, out, "detection_delay.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    bins = [i / 20 for i in range(21)]
    for label, colour in (("benign", "tab:blue"), ("malicious", "tab:red")):
        scores = evaluation.account_scores.get(label, [])
        if scores:
            ax.hist(
                scores,
                bins=bins,
                alpha=0.6,
                color=colour,
                label=f"{label} ({len(scores)} accounts)",
            )
    ax.set_yscale("log")
    ax.set_xlabel("highest account-alert score, any severity (0: never alerted)")
    ax.set_ylabel("accounts")
    ax.set_title("Score distribution, benign versus malicious accounts")
    ax.legend()
    written.append(_save(plt, fig, out, "score_distribution.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    by_type: dict[str, list[float]] = defaultdict(list)
    for a in alerts:
        by_type[f"{a['subject_type']}:{a['type']}"].append((a["ts"] - start_ts) / HOUR_S)
    if by_type:
        end = max(max(v) for v in by_type.values())
        ax.hist(
            list(by_type.values()), bins=max(10, int(end) + 1), stacked=True, label=list(by_type)
        )
        ax.legend()
    ax.set_xlabel("event time (hours since the first event)")
    ax.set_ylabel("alerts per hour")
    ax.set_title("Alerts over event time")
    written.append(_save(plt, fig, out, "alerts_over_time.png"))
    return written
