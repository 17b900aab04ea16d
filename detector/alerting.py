"""Findings to ``Alert``s (contract ``alert.v1``): stable ids, cooldown per account and finding type.

Every alert is a subject, a ``Finding`` about it and what triggered it, built by ``_alert``;
the builders below say only what their kind of alert adds.
"""

from __future__ import annotations

from typing import Any

import msgspec
import xxhash

from detector import __version__
from detector.detectors import Finding
from detector.events import Alert
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


def start_cooldown(state: AccountState, finding: Finding, ts: float) -> None:
    """The finding was alerted at ``ts``: its type is quiet for the cooldown (``should_emit``)."""
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


def _alert(
    subject_type: str,
    subject_id: str,
    finding: Finding,
    *,
    trigger: str,
    ts: float,
    emitted_at: float,
    accounts: list[str] | None = None,
    account_count: int | None = None,
    campaign_id: str | None = None,
    first_seen_ts: float | None = None,
    event_count: int | None = None,
) -> Alert:
    """The one place an ``Alert`` is made; ``trigger`` makes its id (the same trigger, the same id)."""
    return Alert(
        alert_id=alert_id(subject_type, subject_id, finding.type, trigger),
        ts=ts,
        emitted_at=emitted_at,
        subject_type=subject_type,
        subject_id=subject_id,
        type=finding.type,
        severity=finding.severity,
        score=min(1.0, max(0.0, float(finding.score))),
        accounts=accounts,
        account_count=account_count,
        campaign_id=campaign_id,
        reasons=list(finding.reasons),
        evidence=_rounded(finding.evidence),
        first_seen_ts=first_seen_ts,
        event_count=event_count,
        detector_version=__version__,
    )


def account_alert(
    snap: Snapshot, finding: Finding, context: dict[str, Any], emitted_at: float
) -> Alert:
    """An account's finding at one event, with the detectors' context and the account's windows."""
    evidence = dict(finding.evidence)
    evidence.update(context)
    evidence["window_requests"] = [round(x, 1) for x in snap.requests]
    evidence["distinct"] = {
        "ips": snap.distinct.ips,
        "models": snap.distinct.models,
        "user_agents": snap.distinct.user_agents,
    }
    return _alert(
        "account",
        snap.account_id,
        msgspec.structs.replace(finding, evidence=evidence),
        trigger=snap.event_id,
        ts=snap.ts,
        emitted_at=emitted_at,
        first_seen_ts=snap.first_seen,
        event_count=snap.events,
    )


def member_alert(
    account: str, campaign_id: str, campaign: Finding, ts: float, emitted_at: float
) -> Alert:
    """An account alert for a campaign member, so the gateway can act per account."""
    finding = Finding(
        type="coordinated_cluster",
        score=campaign.score,
        severity="medium" if campaign.severity == "medium" else "high",
        reasons=(f"member of campaign {campaign_id}: " + campaign.reasons[0],),
        evidence={"campaign": campaign.evidence},
    )
    return _alert(
        "account",
        account,
        finding,
        trigger=campaign_id,
        ts=ts,
        emitted_at=emitted_at,
        campaign_id=campaign_id,
    )


def campaign_alert(
    campaign_id: str,
    finding: Finding,
    *,
    trigger: str,
    accounts: list[str],
    members: int,
    ts: float,
    first_seen: float,
    events: int,
    emitted_at: float,
) -> Alert:
    """A campaign's finding: ``accounts`` its listed members, ``members`` how many it has."""
    return _alert(
        "campaign",
        campaign_id,
        finding,
        trigger=trigger,
        ts=ts,
        emitted_at=emitted_at,
        accounts=accounts,
        account_count=members,
        first_seen_ts=first_seen,
        event_count=events,
    )


def source_alert(
    source: str,
    finding: Finding,
    *,
    trigger: str,
    campaign_accounts: int,
    requests: int,
    ts: float,
    emitted_at: float,
) -> Alert:
    """A source (IP range, ASN, fingerprint) carrying a campaign's traffic: how many of the
    campaign's accounts use it and how many requests it carried. No account list, and no
    first-seen time (published as 0.0)."""
    return _alert(
        "source",
        source,
        finding,
        trigger=trigger,
        ts=ts,
        emitted_at=emitted_at,
        accounts=[],
        account_count=campaign_accounts,
        first_seen_ts=0.0,
        event_count=requests,
    )
