"""Flagged groups joined into campaigns: what links them, what does not, and which id wins."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from detector.campaigns.linking import Campaigns, LinkRules


def isp_fragment(asn: int) -> dict[str, float]:
    """One campaign's accounts behind one ISP: its own ASN+agent, the campaign's client."""
    return {f"asnua:{asn}|ua": 1.0, "cfp:cfp-op": 0.6, "habit:h-op": 0.45}


def test_fragments_of_one_campaign_become_one_with_the_earliest_groups_id() -> None:
    campaigns = Campaigns(LinkRules())
    assert campaigns.flagged("g-late", 200.0, isp_fragment(7922)) == "g-late"
    assert campaigns.flagged("g-early", 100.0, isp_fragment(20115)) == "g-early"
    assert campaigns.campaign("g-late") == "g-early"
    assert campaigns.groups("g-early") == 2 and campaigns.created("g-early") == 100.0


def test_one_shared_value_or_a_small_share_does_not_link() -> None:
    campaigns = Campaigns(LinkRules())
    campaigns.flagged("a", 1.0, {"cfp:popular": 1.0, "net:a": 1.0})
    # One shared value carrying half of each profile: a popular client, not one operator.
    assert campaigns.flagged("b", 2.0, {"cfp:popular": 1.0, "net:b": 1.0}) == "b"
    # Two shared values, but a small share of the second profile's weight.
    campaigns.flagged("c", 3.0, {"cfp:x": 1.0, "habit:y": 1.0, "net:c": 0.1})
    assert campaigns.flagged("d", 4.0, {"cfp:x": 0.2, "habit:y": 0.2, "net:d": 1.0}) == "d"


def test_a_link_recorded_by_another_worker_is_learned() -> None:
    campaigns = Campaigns(LinkRules())
    campaigns.learn("g2", 50.0, "g1", 10.0)
    assert campaigns.campaign("g2") == "g1"
    assert campaigns.flagged("g2", 50.0, None) == "g1"  # no profile: links stay as they are


def test_forgotten_profiles_no_longer_link() -> None:
    campaigns = Campaigns(LinkRules(remembered=1))
    campaigns.flagged("a", 1.0, isp_fragment(1))
    campaigns.flagged("b", 2.0, {"net:x": 1.0, "cfp:y": 1.0})  # pushes a's profile out
    assert campaigns.flagged("c", 3.0, isp_fragment(2)) == "c"


profiles = st.dictionaries(
    st.sampled_from([f"{k}:{v}" for k in ("cfp", "net", "habit") for v in "abc"]),
    st.floats(0.1, 1.0),
    min_size=1,
    max_size=5,
)


@given(st.lists(profiles, min_size=2, max_size=8), st.randoms())
def test_campaigns_do_not_depend_on_the_order_groups_are_flagged(
    groups: list[dict[str, float]], random: object
) -> None:
    named = [(f"g{i}", float(i), p) for i, p in enumerate(groups)]
    shuffled = list(named)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = Campaigns(LinkRules()), Campaigns(LinkRules())
    for g, born, p in named:
        first.flagged(g, born, p)
    for g, born, p in shuffled:
        second.flagged(g, born, p)
    assert [first.campaign(g) for g, _, _ in named] == [second.campaign(g) for g, _, _ in named]
    roots = Counter(first.campaign(g) for g, _, _ in named)
    assert all(first.groups(root) == n == second.groups(root) for root, n in roots.items())
