"""Findings to ``alert.v1`` records: stable ids, cooldown per account and finding type."""

from __future__ import annotations

from typing import Any

import xxhash

from detector import __version__
from detector.detectors import Finding
from detector.state.account import AccountState, Snapshot


def alert_id(subject_type: str, subject_id: str, alert_type: str, trigger: str) -> str:
    """Stable id of a finding: the same triggering event gives the same id after a redelivery.

    >>> alert_id("account", "a1", "volume_spike", "e9") == alert_id("account", "a1", "volume_spike", "e9")
    True
    """
    return xxhash.xxh3_128_hexdigest(
        f"{subject_type}\x1f{subject_id}\x1f{alert_type}\x1f{trigger}".encode()
    )


def should_emit(state: AccountState, finding: Finding, ts: float, cooldown_s: float) -> bool:
    """Emit unless the same type was alerted within the cooldown at the same or higher severity."""
    previous = state.cooldowns.get(finding.type)
    if previous is None:
        return True
    last_ts, last_rank = previous
    return ts - last_ts >= cooldown_s or finding.rank > last_rank


def mark_emitted(state: AccountState, finding: Finding, ts: float) -> None:
    state.cooldowns[finding.type] = (ts, finding.rank)


def _rounded(value: Any) -> Any:
    """Evidence numbers to 4 decimals: readable, and stable in JSON."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def account_alert(
    snap: Snapshot, finding: Finding, context: dict[str, Any], emitted_at: float
) -> dict[str, Any]:
    evidence = dict(finding.evidence)
    evidence.update(context)
    evidence["window_requests"] = [round(x, 1) for x in snap.requests]
    evidence["distinct"] = {
        "ips": snap.distinct.ips,
        "models": snap.distinct.models,
        "user_agents": snap.distinct.user_agents,
    }
    return {
        "alert_id": alert_id("account", snap.account_id, finding.type, snap.event_id),
        "ts": snap.ts,
        "emitted_at": emitted_at,
        "subject_type": "account",
        "subject_id": snap.account_id,
        "type": finding.type,
        "severity": finding.severity,
        "score": min(1.0, max(0.0, float(finding.score))),
        "reasons": list(finding.reasons),
        "evidence": _rounded(evidence),
        "first_seen_ts": snap.first_seen,
        "event_count": snap.events,
        "detector_version": __version__,
    }


def campaign_alert(
    campaign_id: str, finding: Finding, accounts: list[str], members: int, ts: float, first_seen: float,
    events: int, emitted_at: float, trigger: str, subject_type: str = "campaign",
) -> dict[str, Any]:  # fmt: skip
    """A campaign or source alert; ``trigger`` makes the id (the same change, the same id)."""
    return {
        "alert_id": alert_id(subject_type, campaign_id, finding.type, trigger),
        "ts": ts,
        "emitted_at": emitted_at,
        "subject_type": subject_type,
        "subject_id": campaign_id,
        "type": finding.type,
        "severity": finding.severity,
        "score": min(1.0, max(0.0, float(finding.score))),
        "accounts": accounts,
        "account_count": members,
        "reasons": list(finding.reasons),
        "evidence": _rounded(finding.evidence),
        "first_seen_ts": first_seen,
        "event_count": events,
        "detector_version": __version__,
    }


def member_alert(
    account: str, campaign_id: str, campaign: Finding, ts: float, emitted_at: float
) -> dict[str, Any]:
    """An account alert for a campaign member, so the gateway can act per account."""
    severity = "medium" if campaign.severity == "medium" else "high"
    return {
        "alert_id": alert_id("account", account, "coordinated_cluster", campaign_id),
        "ts": ts,
        "emitted_at": emitted_at,
        "subject_type": "account",
        "subject_id": account,
        "type": "coordinated_cluster",
        "severity": severity,
        "score": min(1.0, max(0.0, float(campaign.score))),
        "campaign_id": campaign_id,
        "reasons": [f"member of campaign {campaign_id}: " + campaign.reasons[0]],
        "evidence": _rounded({"campaign": campaign.evidence}),
        "detector_version": __version__,
    }
