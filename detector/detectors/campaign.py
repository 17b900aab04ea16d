"""Judging campaigns built from shared evidence, and what each batch brings to the graph."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping

from detector.config import CampaignSettings
from detector.detectors import Finding
from detector.features import EventFeatures
from detector.features.intent import HARVEST_NAMES
from detector.state.campaigns import AccountLinks, CampaignState, SourceMix

KIND_NAMES = {
    "bill": "billing fingerprint",
    "cfp": "client fingerprint",
    "net": "IP range",
    "asnua": "ASN and user agent",
    "tpl": "prompt template",
    "range": "address range",
    "born": "account creation hour",
    "lock": "lockstep timing",
}


def evidence_of(
    feats: Iterable[EventFeatures],
    kinds: tuple[str, ...],
    limit: int,
    lockstep: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The shareable values of one account's events in a batch, deduplicated, at most ``limit``.

    >>> from detector.features.request import EventFeatures
    >>> f = EventFeatures("a", "e", "h", 0.0, 0, 0, "m", 0, 0, 0, None, "", "", billing="b1", network="10.0.0.0/24")
    >>> evidence_of([f, f], ("bill", "net", "cfp"), 8)
    ('bill:b1', 'net:10.0.0.0/24')
    """
    found: dict[str, None] = {}
    # An account's events in a batch mostly carry the same values: each set is read once.
    # The key holds every field the values below read (add one there, add it here).
    seen: set[tuple[str, str, str, str, int, str, float | None]] = set()
    for f in feats:
        key = (f.billing, f.client, f.network, f.asn_agent, f.prefix, f.address_range, f.created_ts)
        if key in seen:
            continue
        seen.add(key)
        values = {
            "bill": f.billing,
            "cfp": f.client,
            "net": f.network,
            "asnua": f.asn_agent,
            "tpl": f"{f.prefix:x}" if f.prefix else "",
            "range": f.address_range,
            "born": f"{int(f.created_ts // 3600)}" if f.created_ts else "",
            "lock": "",
        }
        for kind in kinds:
            if values[kind]:
                found.setdefault(f"{kind}:{values[kind]}", None)
    if "lock" in kinds:
        for band in lockstep:
            found.setdefault(f"lock:{band}", None)
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
    total = sum(campaign.capabilities.values())
    if total:
        mix = sorted(campaign.capabilities.items(), key=lambda kv: (-kv[1], kv[0]))  # ties by name
        reasons.append(
            "capability focus of member requests: "
            + ", ".join(
                f"{HARVEST_NAMES.get(k, k)} {v / total:.0%}" for k, v in mix if v / total >= 0.05
            )
        )
    quiet = max(0, n - campaign.active_recently)
    if campaign.joined_recently and quiet:
        # New accounts arriving as others fall silent: the hydra signature.
        hours = settings.churn_window_s / 3600
        reasons.append(
            f"in the last {hours:.0f} h {campaign.joined_recently} accounts joined while {quiet} went quiet: "
            "banned or spent accounts are being replaced"
        )
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
            "members_not_yet_announced": len(campaign.new_members),
            "capability_requests": dict(campaign.capabilities),
            "joined_recently": campaign.joined_recently,
            "quiet_members": quiet,
        },
    )


def pivot(
    campaign: CampaignState, first_seen: dict[str, float], settings: CampaignSettings, base: Finding
) -> tuple[str, Finding] | None:
    """A campaign moving a large share of its traffic to a newly seen model, faster than everyone else."""
    return model_pivot(
        campaign.models,
        campaign.population_models,
        first_seen,
        campaign.last,
        campaign.pivoted,
        campaign.members,
        settings,
        base,
    )


def model_pivot(
    models: Mapping[str, int],
    population_models: Mapping[str, int],
    first_seen: Mapping[str, float],
    latest: float,
    pivoted: Collection[str],
    members: int,
    settings: CampaignSettings,
    base: Finding,
    hours: int = 2,
    compared: str = "all traffic",
) -> tuple[str, Finding] | None:
    """The newly seen model (first seen within ``pivot_window_s`` of ``latest``) a campaign's
    requests of its last ``hours`` hours (``models``) went to, far more than everyone's
    (``population_models``, which the reason calls ``compared``), and its ``model_pivot``
    finding; None if there is none."""
    total = sum(models.values())
    population = sum(population_models.values())
    if total < settings.pivot_min_requests or not population:
        return None
    for model, count in sorted(models.items(), key=lambda kv: (-kv[1], kv[0])):
        seen = first_seen.get(model)
        if model in pivoted or seen is None or latest - seen > settings.pivot_window_s:
            continue
        share = count / total
        pop_share = population_models.get(model, 0) / population
        if share < settings.pivot_min_share or share < settings.pivot_min_ratio * pop_share:
            continue
        since = (latest - seen) / 3600
        window = "last hour's" if hours == 1 else f"last {hours} hours'"
        severity = "critical" if base.severity == "critical" else "high"
        return model, Finding(
            "model_pivot",
            round(min(1.0, 0.5 + share / 2), 4),
            severity,
            (
                f"campaign sent {share:.0%} of its {window} {total} requests to {model}, "
                f"first seen {since:.1f} h earlier; {compared} sent it {pop_share:.0%}",
                base.reasons[0],
            ),
            {
                "model": model,
                "campaign_share": round(share, 4),
                "population_share": round(pop_share, 4),
                "hours_since_first_seen": round(since, 2),
                "campaign_requests_2h": total,  # a published evidence name; the window is window_h
                "window_h": hours,
                "members": members,
            },
        )
    return None


def source(mix: SourceMix, settings: CampaignSettings, ts: float) -> Finding | None:
    """An origin carrying campaign traffic, with the mix, so a reseller is not blocked wholesale.

    Re-alerted when its share moved materially, and then not within the cooldown unless it
    turned from mixed to mostly abusive.
    """
    share = mix.request_share
    if (
        share < settings.source_min_share
        or mix.campaign_accounts < settings.source_min_accounts
        or mix.requests < settings.source_min_requests
    ):
        return None
    mostly = share >= settings.source_high_share
    if mix.alerted_share:
        if abs(share - mix.alerted_share) < settings.source_realert_delta:
            return None
        escalated = mostly and mix.alerted_share < settings.source_high_share
        if ts - mix.alerted_ts < settings.source_cooldown_s and not escalated:
            return None
    kind, _, value = mix.evidence.partition(":")
    what = "address range" if kind == "range" else "ASN and user agent"
    return Finding(
        "campaign_source",
        round(share, 4),
        "high" if mostly else "medium",
        (
            f"{what} {value}: {share:.0%} of its {mix.requests} requests and {mix.campaign_accounts} of its "
            f"~{mix.accounts} accounts are campaign traffic",
            "mostly abusive: the source can be throttled"
            if mostly
            else "mixed with honest customers: act on the campaign's accounts, do not block the source",
        ),
        {
            "source": mix.evidence,
            "requests": mix.requests,
            "campaign_requests": mix.campaign_requests,
            "accounts": mix.accounts,
            "campaign_accounts": mix.campaign_accounts,
            "request_share": round(share, 4),
            "account_share": round(mix.account_share, 4),
        },
    )


__all__ = ["AccountLinks", "evidence_of", "judge", "model_pivot", "pivot", "source"]
