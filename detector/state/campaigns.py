"""What the campaign stage links and judges: an account's contribution to a batch's link,
a campaign, an origin's traffic mix (the records ``io.campaign_store`` reads and writes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccountLinks:
    """What one account of the batch brings to the campaign graph."""

    account_id: str
    ts: float
    suspect: bool
    events: int
    evidence: tuple[str, ...]
    models: tuple[tuple[str, int], ...] = ()  # requests per model in the batch
    capability: str = ""  # the account's dominant harvested capability, if any


@dataclass
class CampaignState:
    root: str
    created: float
    last: float
    members: int
    alerted: int
    events: int
    kinds: tuple[str, ...]
    new_members: list[str] = field(default_factory=list)  # members whose own alert is not out yet
    listed: list[str] = field(default_factory=list)  # filled when the change is material
    pivoted: frozenset[str] = frozenset()  # models a pivot alert was already sent for
    # Requests per model in the campaign and in the population, for the last two event-time hours.
    models: dict[str, int] = field(default_factory=dict)
    population_models: dict[str, int] = field(default_factory=dict)
    capabilities: dict[str, int] = field(
        default_factory=dict
    )  # member requests by capability focus
    joined_recently: int = 0  # members that joined within the churn window before ``last``
    active_recently: int = 0  # listed members active within the churn window

    @property
    def campaign_id(self) -> str:
        return campaign_id(self.root)


@dataclass(frozen=True)
class SourceMix:
    """A network or client origin, and how much of its traffic is attributed to campaigns."""

    evidence: str  # "range:185.199.0.0/16" or "asnua:64500|1a2b3c4d"
    requests: int
    campaign_requests: int
    accounts: int
    campaign_accounts: int
    campaign_root: str
    alerted_share: float
    alerted_ts: float = 0.0

    @property
    def request_share(self) -> float:
        return self.campaign_requests / self.requests if self.requests else 0.0

    @property
    def account_share(self) -> float:
        return min(1.0, self.campaign_accounts / self.accounts) if self.accounts else 0.0


@dataclass
class LinkResult:
    campaigns: list[CampaignState]
    sources: list[SourceMix]
    model_first_seen: dict[str, float]


def campaign_id(root: str) -> str:
    """A campaign's public id, from the union-find root it keeps for life.

    >>> campaign_id("e:bill:card-1")
    'cmp-7ee46ff581f7'
    """
    return "cmp-" + hashlib.sha1(root.encode("utf-8")).hexdigest()[:12]
