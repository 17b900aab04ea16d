"""The network sources a flagged group comes from, with their mix.

A reseller's egress (an address range, an ASN with its user agent) carries honest customers
beside the campaign riding on it. Of the accounts holding such a value in its group's profile,
how many are the group's flagged members says whether the source is mostly the campaign's
(it can be throttled) or mixed (act on the campaign's accounts, never block the source).
Counted in accounts: the value index knows each value's holders, not its requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from detector.campaigns.evidence import FAMILY, KIND_NAMES
from detector.config import CampaignSettings
from detector.detectors import Finding

NETWORK_KINDS = frozenset(kind for kind, family in FAMILY.items() if family == "network")


@dataclass(frozen=True)
class SourceMix:
    value: str  # "kind:value", as the value index keys it
    holders: int  # accounts holding it within the window, at most the index's cap
    campaign_accounts: int  # the group's flagged members among them
    saturated: bool  # the holders reached the cap: more accounts than counted

    @property
    def share(self) -> float:
        return min(1.0, self.campaign_accounts / self.holders) if self.holders else 0.0


def mixes(
    profile: Iterable[str],
    flagged_values: Iterable[Iterable[str]],
    holders: Mapping[str, int],
    cap: int,
) -> list[SourceMix]:
    """The mix of each network value of a group's ``profile`` whose holders are known:
    ``flagged_values`` holds each flagged member's values.

    >>> mixes(["asnua:1|a", "cfp:x"], [["asnua:1|a", "cfp:x"]] * 3, {"asnua:1|a": 12}, 2000)
    [SourceMix(value='asnua:1|a', holders=12, campaign_accounts=3, saturated=False)]
    """
    members = [set(values) for values in flagged_values]
    out = []
    for v in sorted(profile):
        if v.partition(":")[0] not in NETWORK_KINDS or v not in holders:
            continue
        on = sum(v in m for m in members)
        # The index may not have counted a holder yet that the group's record already has.
        out.append(SourceMix(v, max(holders[v], on), on, holders[v] >= cap))
    return out


def source_finding(mix: SourceMix, campaign: str, settings: CampaignSettings) -> Finding | None:
    """A ``campaign_source`` finding when the campaign's share of the source's accounts is at
    least ``source_min_share`` over ``source_min_accounts``: high when the source is mostly the
    campaign's (``source_high_share``; never for a source past the index's cap, whose other
    accounts are not all counted), else medium, mixed."""
    share = mix.share
    if share < settings.source_min_share or mix.campaign_accounts < settings.source_min_accounts:
        return None
    mostly = share >= settings.source_high_share and not mix.saturated
    kind, _, value = mix.value.partition(":")
    holders = f"{mix.holders}+" if mix.saturated else str(mix.holders)
    return Finding(
        "campaign_source",
        round(share, 4),
        "high" if mostly else "medium",
        (
            f"{KIND_NAMES.get(kind, kind)} {value}: {mix.campaign_accounts} of the {holders} "
            f"accounts on it are campaign {campaign}'s flagged members ({share:.0%})",
            "mostly abusive: the source can be throttled"
            if mostly
            else "mixed with honest customers: act on the campaign's accounts, do not block the source",
        ),
        {
            "source": mix.value,
            "campaign_id": campaign,
            "accounts": mix.holders,
            "accounts_saturated": mix.saturated,
            "campaign_accounts": mix.campaign_accounts,
            "account_share": round(share, 4),
        },
    )
