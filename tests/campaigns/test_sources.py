"""A flagged group's network sources and their mix."""

from __future__ import annotations

from detector.campaigns.sources import SourceMix, mixes, source_finding
from detector.config import CampaignSettings

SETTINGS = CampaignSettings()


def test_only_network_values_with_known_holders_are_sources() -> None:
    profile = ["asnua:1|a", "net:10.0.0.0/24", "cfp:x", "asnua:2|b"]
    found = mixes(
        profile,
        [["asnua:1|a", "net:10.0.0.0/24"]] * 6,
        {"asnua:1|a": 8, "cfp:x": 6, "net:10.0.0.0/24": 4},
        2000,
    )
    assert [(m.value, m.holders, m.campaign_accounts) for m in found] == [
        ("asnua:1|a", 8, 6),
        ("net:10.0.0.0/24", 6, 6),  # never fewer holders than the members counted on it
    ]


def test_a_source_past_the_index_cap_is_never_mostly_the_campaigns() -> None:
    saturated = SourceMix("asnua:1|a", 2000, 1900, saturated=True)
    finding = source_finding(saturated, "cmp-1", SETTINGS)
    assert finding is not None and finding.severity == "medium"
    assert "2000+ accounts" in finding.reasons[0]
    counted = SourceMix("asnua:1|a", 2000, 1900, saturated=False)
    assert (source_finding(counted, "cmp-1", SETTINGS) or finding).severity == "high"


def test_too_few_campaign_accounts_or_too_small_a_share_is_no_source() -> None:
    assert source_finding(SourceMix("net:x", 6, 4, False), "cmp-1", SETTINGS) is None
    assert source_finding(SourceMix("net:x", 100, 10, False), "cmp-1", SETTINGS) is None
