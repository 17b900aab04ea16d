"""Judging campaigns built from shared evidence, and what each batch brings to the graph."""

from __future__ import annotations

import math
from collections.abc import Iterable

from detector.config import CampaignSettings
from detector.detectors import Finding
from detector.features import EventFeatures
from detector.state.campaigns import AccountLinks, CampaignState

KIND_NAMES = {
    "bill": "billing fingerprint",
    "cfp": "client fingerprint",
    "net": "IP range",
    "asnua": "ASN and user agent",
    "tpl": "prompt template",
}


def evidence_of(
    feats: Iterable[EventFeatures], kinds: tuple[str, ...], limit: int
) -> tuple[str, ...]:
    """The shareable values of one account's events in a batch, deduplicated, at most ``limit``.

    >>> from detector.features.request import EventFeatures
    >>> f = EventFeatures("a", "e", "h", 0.0, 0, 0, "m", 0, 0, 0, None, "", "", billing="b1", network="10.0.0.0/24")
    >>> evidence_of([f, f], ("bill", "net", "cfp"), 8)
    ('bill:b1', 'net:10.0.0.0/24')
    """
    found: dict[str, None] = {}
    for f in feats:
        values = {
            "bill": f.billing,
            "cfp": f.client,
            "net": f.network,
            "asnua": f.asn_agent,
            "tpl": f"{f.prefix:x}" if f.prefix else "",
        }
        for kind in kinds:
            if values[kind]:
                found.setdefault(f"{kind}:{values[kind]}", None)
    return tuple(found)[:limit]


def judge(campaign: CampaignState, settings: CampaignSettings) -> Finding:
    """Severity grows with size and with independent kinds of shared evidence."""
    n, kinds = campaign.members, len(campaign.kinds)
    if n >= settings.critical_accounts and kinds >= settings.critical_min_kinds:
        severity = "critical"
    elif n >= settings.high_accounts:
        severity = "high"
    else:
        severity = "medium"
    score = round(min(1.0, 0.5 + 0.25 * math.log10(max(n, 1)) + 0.1 * (kinds - 1)), 4)
    shared = ", ".join(KIND_NAMES.get(k, k) for k in campaign.kinds)
    hours = max(0.0, campaign.last - campaign.created) / 3600
    reasons = [
        f"{n} accounts linked by shared {shared} ({kinds} independent kind{'s' if kinds != 1 else ''} of evidence)",
        f"{campaign.events} requests from members over {hours:.1f} h of event time",
    ]
    if campaign.alerted:
        reasons.append(f"grew from {campaign.alerted} to {n} accounts since the last alert")
    return Finding(
        "coordinated_cluster",
        score,
        severity,
        tuple(reasons),
        {
            "members": n,
            "evidence_kinds": list(campaign.kinds),
            "events": campaign.events,
            "created_ts": campaign.created,
            "last_ts": campaign.last,
            "previously_alerted_members": campaign.alerted,
            "new_members_this_batch": len(campaign.new_members),
        },
    )


__all__ = ["AccountLinks", "evidence_of", "judge"]
