"""Pure scoring of alerts against labels. No I/O.

An account counts as flagged when it is the subject of an account alert of severity
medium or above; its detection time is the event time of the first such alert.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

FLAG_SEVERITIES = frozenset({"medium", "high", "critical"})


@dataclass(frozen=True)
class GroupResult:
    group: str
    label: str
    accounts: int
    flagged: int
    events: int
    delay_median_s: float | None = None
    delay_p90_s: float | None = None
    events_before_detection_median: float | None = None

    @property
    def rate(self) -> float:
        return self.flagged / self.accounts if self.accounts else 0.0


@dataclass(frozen=True)
class Evaluation:
    groups: list[GroupResult]
    precision: float
    recall: float
    f1: float
    benign_fpr: float
    true_positives: int
    false_positives: int
    false_negatives: int
    alerts_by_type: dict[str, int]
    campaign_grouping: dict[str, Any] | None
    model_pivots: list[dict[str, Any]] = field(default_factory=list)
    account_scores: dict[str, list[float]] = field(
        default_factory=dict
    )  # label -> max alert score per account

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("account_scores")
        for g, result in zip(data["groups"], self.groups, strict=True):
            g["rate"] = round(result.rate, 4)
        return data


def quantile(values: list[float], q: float) -> float | None:
    """Linear-interpolated quantile; None for no values.

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def adjusted_rand_index(truth: list[str], predicted: list[str]) -> float:
    """Agreement of two groupings of the same items, corrected for chance (1: identical).

    >>> adjusted_rand_index(["a", "a", "b", "b"], ["x", "x", "y", "y"])
    1.0
    >>> round(adjusted_rand_index(["a", "a", "b", "b"], ["x", "y", "x", "y"]), 2)
    -0.5
    """

    def pairs(n: int) -> float:
        return n * (n - 1) / 2

    n = len(truth)
    if n < 2:
        return 1.0
    table = Counter(zip(truth, predicted, strict=True))
    sum_cells = sum(pairs(c) for c in table.values())
    sum_rows = sum(pairs(c) for c in Counter(truth).values())
    sum_cols = sum(pairs(c) for c in Counter(predicted).values())
    expected = sum_rows * sum_cols / pairs(n)
    maximum = (sum_rows + sum_cols) / 2
    if maximum == expected:
        return 1.0
    return (sum_cells - expected) / (maximum - expected)


def first_flags(alerts: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Account -> event time of its first account alert of severity medium or above."""
    detected: dict[str, float] = {}
    for alert in alerts:
        if alert["subject_type"] == "account" and alert["severity"] in FLAG_SEVERITIES:
            account = alert["subject_id"]
            detected[account] = min(detected.get(account, math.inf), float(alert["ts"]))
    return detected


def campaign_members(alerts: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Account -> the campaign alert that named it last (a campaign's membership only grows)."""
    members: dict[str, str] = {}
    for alert in alerts:
        if alert["subject_type"] == "campaign":
            for account in alert.get("accounts", []):
                members[account] = alert["subject_id"]
    return members


def grouping(
    members: Mapping[str, str], labels: Mapping[str, Mapping[str, str]]
) -> dict[str, Any] | None:
    """Purity and adjusted Rand index of detected campaigns against the true groups.

    Over the accounts named by campaign alerts only; None when there are none.
    """
    if not members:
        return None
    accounts = sorted(members)
    truth = [labels.get(a, {}).get("group", "unknown") for a in accounts]
    predicted = [members[a] for a in accounts]
    clusters: dict[str, list[str]] = defaultdict(list)
    for t, p in zip(truth, predicted, strict=True):
        clusters[p].append(t)
    purity = sum(Counter(ts).most_common(1)[0][1] for ts in clusters.values()) / len(accounts)
    return {
        "accounts": len(accounts),
        "campaigns": len(clusters),
        "purity": round(purity, 4),
        "adjusted_rand_index": round(adjusted_rand_index(truth, predicted), 4),
    }


def events_until(times: list[float], ts: float) -> int:
    """How many of an account's (sorted) events happened at or before ``ts``."""
    return bisect.bisect_right(times, ts)


def evaluate(
    alerts: Iterable[Mapping[str, Any]],
    labels: Mapping[str, Mapping[str, str]],
    event_times: Mapping[str, list[float]],
    release_ts: float | None = None,
) -> Evaluation:
    """Score ``alerts`` against ``labels`` (account -> {label, group}).

    ``event_times`` holds each account's event timestamps, sorted.
    """
    alerts = list(alerts)
    detected = first_flags(alerts)
    membership = campaign_members(alerts)
    max_score: dict[str, float] = defaultdict(float)
    by_type: Counter[str] = Counter()
    pivot_alerts = []
    for alert in alerts:
        by_type[f"{alert['subject_type']}:{alert['type']}"] += 1
        if alert["subject_type"] == "campaign" and alert["type"] == "model_pivot":
            pivot_alerts.append(alert)
        elif alert["subject_type"] == "account":
            account = alert["subject_id"]
            max_score[account] = max(max_score[account], float(alert["score"]))

    members: dict[str, list[str]] = defaultdict(list)
    for account, info in labels.items():
        members[info["group"]].append(account)

    groups = []
    for group, accounts in sorted(
        members.items(), key=lambda kv: (labels[kv[1][0]]["label"], kv[0])
    ):
        label = labels[accounts[0]]["label"]
        flagged = [a for a in accounts if a in detected]
        delays, before = [], []
        for a in flagged:
            times = event_times.get(a, [])
            if times:
                delays.append(max(0.0, detected[a] - times[0]))
                before.append(float(events_until(times, detected[a])))
        groups.append(
            GroupResult(
                group=group,
                label=label,
                accounts=len(accounts),
                flagged=len(flagged),
                events=sum(len(event_times.get(a, [])) for a in accounts),
                delay_median_s=quantile(delays, 0.5) if label == "malicious" else None,
                delay_p90_s=quantile(delays, 0.9) if label == "malicious" else None,
                events_before_detection_median=quantile(before, 0.5)
                if label == "malicious"
                else None,
            )
        )

    malicious = {a for a, v in labels.items() if v["label"] == "malicious"}
    benign = set(labels) - malicious
    flagged_all = set(detected) & set(labels)
    tp = len(flagged_all & malicious)
    fp = len(flagged_all & benign)
    fn = len(malicious - flagged_all)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    # Which true campaign a pivot alert is about: mostly that of the accounts it lists (the
    # group that moved: a campaign of several groups may hold several true campaigns), else
    # the one its campaign mostly is.
    majority: dict[str, Counter[str]] = defaultdict(Counter)
    for account, cid in membership.items():
        majority[cid][labels.get(account, {}).get("group", "unknown")] += 1

    def about(alert: Mapping[str, Any]) -> str | None:
        listed = Counter(
            labels.get(a, {}).get("group", "unknown") for a in alert.get("accounts", [])
        )
        found = listed or majority[alert["subject_id"]]
        return found.most_common(1)[0][0] if found else None

    pivots = [
        {
            "campaign_id": a["subject_id"],
            "true_campaign": about(a),
            "model": a.get("evidence", {}).get("model"),
            "ts": a["ts"],
            "hours_after_release": round((a["ts"] - release_ts) / 3600, 2) if release_ts else None,
        }
        for a in pivot_alerts
    ]

    scores: dict[str, list[float]] = {"benign": [], "malicious": []}
    for account, info in labels.items():
        scores[info["label"]].append(max_score.get(account, 0.0))

    return Evaluation(
        groups=groups,
        precision=round(precision, 4),
        recall=round(recall, 4),
        f1=round(f1, 4),
        benign_fpr=round(fp / len(benign), 4) if benign else 0.0,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        alerts_by_type=dict(sorted(by_type.items())),
        campaign_grouping=grouping(membership, labels),
        model_pivots=pivots,
        account_scores=scores,
    )
