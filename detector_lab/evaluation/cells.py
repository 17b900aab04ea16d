"""One draw of a suite scored per campaign family x variant and per honest family. Pure, no I/O.

A draw's cells come from account-level facts (first medium+ alert, campaign membership, event
times), with the same definitions as ``scoring.evaluate``; a family that appears in several
groups of one draw is pooled over its accounts. ``matrix`` summarises cells over draws.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detector_lab.evaluation.scoring import (
    FLAG_SEVERITIES,
    Evaluation,
    events_until,
    first_flags,
    grouping,
    quantile,
)

NO_VARIANT = "none"


def family_of(info: Mapping[str, str]) -> str:
    """A label's family; labels of plain scenarios have none, so their group stands in."""
    return info.get("family") or info["group"]


def variant_of(info: Mapping[str, str]) -> str:
    return info.get("variant") or NO_VARIANT


@dataclass(frozen=True)
class CampaignCell:
    """One campaign family x variant in one draw."""

    family: str
    variant: str
    accounts: int
    flagged: int
    grouped: int  # accounts named by any campaign alert
    delay_median_s: float | None  # None: no account flagged
    events_before_detection_median: float | None
    purity: float | None  # over the campaign alerts naming any of these accounts; None: none did
    adjusted_rand_index: float | None
    pivoted: bool  # some account sent traffic to the newest model (a pivot to detect)
    pivot_delay_h: float | None  # first model_pivot alert on these groups, hours after release

    @property
    def recall(self) -> float:
        return self.flagged / self.accounts if self.accounts else 0.0


@dataclass(frozen=True)
class HonestCell:
    """One honest family in one draw, with the alert types that flagged its accounts."""

    family: str
    accounts: int
    flagged: int
    flagged_by: dict[str, int]  # alert type -> accounts it flagged (medium+)

    @property
    def fpr(self) -> float:
        return self.flagged / self.accounts if self.accounts else 0.0


@dataclass(frozen=True)
class MixedCampaignAlert:
    """A campaign alert whose listed accounts include honest ones."""

    campaign: str  # the alert's subject_id
    type: str
    ts: float
    accounts: int  # distinct accounts listed
    honest: int  # of which honest

    @property
    def honest_share(self) -> float:
        return self.honest / self.accounts if self.accounts else 0.0


@dataclass(frozen=True)
class DrawScore:
    draw: int
    seed: int
    events: int
    accounts: int
    alerts: int
    precision: float
    recall: float
    benign_fpr: float
    purity: float | None  # the draw's whole campaign grouping (scoring.evaluate)
    adjusted_rand_index: float | None
    seconds: float  # simulate + replay + score
    campaigns: list[CampaignCell]
    honest: list[HonestCell]
    campaign_alerts: int = 0  # alerts with a campaign subject
    mixed_campaign_alerts: list[MixedCampaignAlert] = field(default_factory=list)


def score_draw(
    draw: int,
    seed: int,
    alerts: Sequence[Mapping[str, Any]],
    labels: Mapping[str, Mapping[str, str]],
    times: Mapping[str, list[float]],
    models: Mapping[str, set[str]],
    newest_model: str | None,
    evaluation: Evaluation,
    seconds: float = 0.0,
) -> DrawScore:
    """Cells of one draw. ``evaluation`` is ``scoring.evaluate`` of the same alerts and labels
    (its overall numbers and model pivots are reused, not recomputed)."""
    flags = first_flags(alerts)
    membership = _members_by_campaign(alerts)
    account_campaigns: dict[str, set[str]] = defaultdict(set)
    for cid, named in membership.items():
        for a in named:
            account_campaigns[a].add(cid)
    pivot_h: dict[str, float] = {}  # true group -> first pivot alert, hours after release
    for p in evaluation.model_pivots:
        group, hours = p.get("true_campaign"), p.get("hours_after_release")
        if group is not None and hours is not None:
            pivot_h[group] = min(pivot_h.get(group, hours), hours)

    malicious: dict[tuple[str, str], list[str]] = defaultdict(list)
    honest: dict[str, list[str]] = defaultdict(list)
    for account, info in labels.items():
        if info["label"] == "malicious":
            malicious[(family_of(info), variant_of(info))].append(account)
        else:
            honest[family_of(info)].append(account)

    facts = _Facts(
        labels, flags, times, models, newest_model, membership, account_campaigns, pivot_h
    )
    campaigns = [
        _campaign_cell(family, variant, accounts, facts)
        for (family, variant), accounts in sorted(malicious.items())
    ]
    flagged_types = _flagging_types(alerts)
    honest_cells = []
    for family, accounts in sorted(honest.items()):
        by_type: Counter[str] = Counter()
        for a in accounts:
            by_type.update(flagged_types.get(a, ()))
        honest_cells.append(
            HonestCell(family, len(accounts), sum(a in flags for a in accounts), ranked(by_type))
        )
    g = evaluation.campaign_grouping
    return DrawScore(
        draw=draw,
        seed=seed,
        events=sum(len(t) for t in times.values()),
        accounts=len(labels),
        alerts=len(alerts),
        precision=evaluation.precision,
        recall=evaluation.recall,
        benign_fpr=evaluation.benign_fpr,
        purity=g["purity"] if g else None,
        adjusted_rand_index=g["adjusted_rand_index"] if g else None,
        seconds=round(seconds, 2),
        campaigns=campaigns,
        honest=honest_cells,
        campaign_alerts=sum(a["subject_type"] == "campaign" for a in alerts),
        mixed_campaign_alerts=mixed_campaign_alerts(alerts, labels),
    )


def mixed_campaign_alerts(
    alerts: Iterable[Mapping[str, Any]], labels: Mapping[str, Mapping[str, str]]
) -> list[MixedCampaignAlert]:
    """Every campaign alert listing at least one honest (labelled, not malicious) account."""
    mixed = []
    for alert in alerts:
        if alert["subject_type"] != "campaign":
            continue
        listed = set(alert.get("accounts", []))
        honest = sum(a in labels and labels[a]["label"] != "malicious" for a in listed)
        if honest:
            mixed.append(
                MixedCampaignAlert(
                    alert["subject_id"], alert["type"], float(alert["ts"]), len(listed), honest
                )
            )
    return mixed


def _members_by_campaign(alerts: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    members: dict[str, set[str]] = defaultdict(set)
    for alert in alerts:
        if alert["subject_type"] == "campaign":
            members[alert["subject_id"]].update(alert.get("accounts", []))
    return members


def ranked(counts: Counter[str]) -> dict[str, int]:
    """Most frequent first, ties by name: the same report for the same draws."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _flagging_types(alerts: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    types: dict[str, set[str]] = defaultdict(set)
    for alert in alerts:
        if alert["subject_type"] == "account" and alert["severity"] in FLAG_SEVERITIES:
            types[alert["subject_id"]].add(alert["type"])
    return types


@dataclass(frozen=True)
class _Facts:
    """One draw's account-level facts, shared by its cells."""

    labels: Mapping[str, Mapping[str, str]]
    flags: Mapping[str, float]  # account -> first medium+ alert
    times: Mapping[str, list[float]]
    models: Mapping[str, set[str]]
    newest_model: str | None
    membership: Mapping[str, set[str]]  # campaign alert -> accounts
    account_campaigns: Mapping[str, set[str]]  # account -> campaign alerts
    pivot_h: Mapping[str, float]  # true group -> first pivot alert, hours after release


def _campaign_cell(family: str, variant: str, accounts: list[str], f: _Facts) -> CampaignCell:
    delays, before = [], []
    for a in accounts:
        if a in f.flags and f.times.get(a):
            delays.append(max(0.0, f.flags[a] - f.times[a][0]))
            before.append(float(events_until(f.times[a], f.flags[a])))
    # Grouping as scoring defines it, restricted to the campaign alerts that named this cell:
    # are the campaigns that caught it made of it alone, and is it one campaign, not several?
    touching = sorted({cid for a in accounts for cid in f.account_campaigns.get(a, ())})
    g = grouping({a: cid for cid in touching for a in f.membership[cid]}, f.labels)
    pivots = [
        f.pivot_h[grp] for grp in {f.labels[a]["group"] for a in accounts} if grp in f.pivot_h
    ]
    newest = f.newest_model
    return CampaignCell(
        family=family,
        variant=variant,
        accounts=len(accounts),
        flagged=sum(a in f.flags for a in accounts),
        grouped=sum(a in f.account_campaigns for a in accounts),
        delay_median_s=quantile(delays, 0.5),
        events_before_detection_median=quantile(before, 0.5),
        purity=g["purity"] if g else None,
        adjusted_rand_index=g["adjusted_rand_index"] if g else None,
        pivoted=newest is not None and any(newest in f.models.get(a, ()) for a in accounts),
        pivot_delay_h=min(pivots) if pivots else None,
    )
