"""Groups as shared profiles: the properties that make chains impossible by construction."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.campaigns.evidence import FAMILY, Value
from detector.campaigns.grouping import (
    Group,
    GroupRules,
    cap_shares,
    clamp,
    cluster,
    coverage,
    form,
)

RULES = GroupRules()
KINDS = sorted(FAMILY)


def _largest_share(profile: dict[Value, float], part: dict[str, str] | None = None) -> float:
    """The largest share of the profile's weight on one kind (or one family, with ``part``)."""
    total = sum(profile.values())
    name = (lambda v: part[v[0]]) if part else (lambda v: v[0])
    return max(
        sum(w for v, w in profile.items() if name(v) == key) / total
        for key in {name(v) for v in profile}
    )


def assert_valid(group: Group, summaries: dict[str, frozenset[Value]], rules: GroupRules) -> None:
    total = sum(group.profile.values())
    assert max(group.profile.values()) <= rules.value_cap * total + 1e-9
    assert _largest_share(dict(group.profile)) <= rules.kind_cap + 1e-9
    assert _largest_share(dict(group.profile), dict(FAMILY)) <= rules.family_cap + 1e-9
    assert len(group.members) >= rules.min_members
    for account in group.members:
        held = summaries[account] & set(group.profile)
        assert coverage(summaries[account], group.profile) >= rules.rho
        assert len(held) >= 2 and len({FAMILY[v[0]] for v in held}) >= 2
    for a, b in itertools.combinations(sorted(group.members), 2):
        shared = summaries[a] & summaries[b] & set(group.profile)
        assert sum(group.profile[v] for v in shared) >= (2 * rules.rho - 1) * total - 1e-9


values = st.tuples(st.sampled_from(KINDS), st.sampled_from("abcdefgh"))
populations = st.dictionaries(
    st.text("pqrstuvwxyz", min_size=1, max_size=3),
    st.frozensets(values, min_size=0, max_size=8),
    min_size=0,
    max_size=40,
)


@st.composite
def weighted_populations(draw: st.DrawFn) -> tuple[dict[str, frozenset[Value]], dict[Value, float]]:
    summaries = draw(populations)
    pool = sorted({v for s in summaries.values() for v in s})
    weights = {v: draw(st.floats(0.0, 10.0)) for v in pool}
    return summaries, weights


@given(weighted_populations())
@settings(max_examples=200, deadline=None)
def test_every_group_holds_its_invariants(
    population: tuple[dict[str, frozenset[Value]], dict[Value, float]],
) -> None:
    summaries, weights = population
    groups = cluster(summaries, weights, RULES)
    seen: set[str] = set()
    for group in groups:
        assert_valid(group, summaries, RULES)
        assert not (group.members & seen), "an account in two groups"
        seen |= group.members


@given(weighted_populations())
@settings(max_examples=100, deadline=None)
def test_values_nobody_may_weigh_make_no_group(
    population: tuple[dict[str, frozenset[Value]], dict[Value, float]],
) -> None:
    summaries, weights = population
    assert cluster(summaries, dict.fromkeys(weights, 0.0), RULES) == []


@given(st.integers(3, 40), st.lists(st.sampled_from(KINDS), min_size=40, max_size=40))
@settings(max_examples=100, deadline=None)
def test_a_chain_of_single_shared_values_makes_no_group(n: int, kinds: list[str]) -> None:
    # a_i and a_i+1 share exactly one value, of any kind and weight; nothing else is shared.
    summaries = {
        f"a{i:02d}": frozenset(
            {(kinds[i], f"link{i}"), (kinds[i - 1], f"link{i - 1}"), ("net", f"own{i}")}
        )
        for i in range(n)
    }
    weights = {v: 5.0 for s in summaries.values() for v in s}
    for group in cluster(summaries, weights, RULES):
        assert_valid(group, summaries, RULES)
        for a, b in itertools.combinations(group.members, 2):
            assert summaries[a] & summaries[b], f"{a} and {b} share nothing"


@given(weighted_populations(), st.integers(0, 2**32))
@settings(max_examples=100, deadline=None)
def test_camouflage_does_not_remove_members(
    population: tuple[dict[str, frozenset[Value]], dict[Value, float]], seed: int
) -> None:
    summaries, weights = population
    if len(summaries) < RULES.min_members:
        return
    before = form(summaries, weights, RULES)
    rng = random.Random(seed)
    disguised = {
        a: s | {(rng.choice(KINDS), f"camouflage-{a}-{k}") for k in range(rng.randrange(6))}
        for a, s in summaries.items()
    }
    extra = {v: rng.uniform(0, 10) for s in disguised.values() for v in s if v not in weights}
    after = form(disguised, {**weights, **extra}, RULES)
    assert (before is None) == (after is None)
    if before is not None and after is not None:
        assert before.members == after.members


@pytest.mark.parametrize("fingerprint_df", [157, 10_000])
def test_apps_sharing_a_popular_client_are_never_one_group(fingerprint_df: int) -> None:
    """The issue's 157-account merge: apps of 5-30 accounts, each with its own template
    opening, all on one client fingerprint. Across apps only the fingerprint is common, one
    value, not a profile: each app may be a group, never two apps together."""
    rng = random.Random(7)
    summaries: dict[str, frozenset[Value]] = {}
    app = 0
    while len(summaries) < 157:
        for i in range(min(rng.randint(5, 30), 157 - len(summaries))):
            summaries[f"app{app}-{i}"] = frozenset({("open", f"frame{app}"), ("cfp", "popular")})
        app += 1
    weights: dict[Value, float] = {("cfp", "popular"): 0.1 if fingerprint_df > 1000 else 1.2}
    weights |= {v: 4.0 for s in summaries.values() for v in s if v[0] == "open"}
    groups = cluster(summaries, weights, RULES)
    assert len(groups) == app
    for group in groups:
        assert len({a.split("-")[0] for a in group.members}) == 1
    # Without the fingerprint's weight, a template alone is one value: no group at all.
    assert cluster(summaries, weights | {("cfp", "popular"): 0.0}, RULES) == []


@given(weighted_populations(), st.randoms())
@settings(max_examples=50, deadline=None)
def test_the_same_accounts_in_any_order_give_the_same_groups(
    population: tuple[dict[str, frozenset[Value]], dict[Value, float]], rng: random.Random
) -> None:
    summaries, weights = population
    shuffled = list(summaries.items())
    rng.shuffle(shuffled)
    assert cluster(dict(shuffled), weights, RULES) == cluster(summaries, weights, RULES)


@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=12), st.floats(0.05, 0.95))
def test_cap_shares_leaves_none_above_the_cap(amounts: list[float], cap: float) -> None:
    named = {f"k{i}": a for i, a in enumerate(amounts)}
    capped = cap_shares(named, cap)
    positive = sum(a > 0 for a in amounts)
    if capped is None:
        assert positive * cap < 1 + 1e-9
        return
    total = sum(capped.values())
    assert all(c <= cap * total + 1e-6 for c in capped.values())
    assert all(c <= named[k] + 1e-9 for k, c in capped.items())


def test_clamp_needs_two_values_of_two_families() -> None:
    assert clamp({("cfp", "a"): 1.0}, RULES) is None
    assert clamp({("cfp", "a"): 1.0, ("cfp", "b"): 1.0, ("cfp", "c"): 1.0}, RULES) is None
    # An address range and its ASN say one thing: the same network egress.
    assert clamp({("net", "a"): 1.0, ("asnua", "b"): 1.0}, RULES) is None
    assert clamp({("cfp", "a"): 1.0, ("open", "b"): 3.0}, RULES) == {
        ("cfp", "a"): pytest.approx(1.0),
        ("open", "b"): pytest.approx(1.0),
    }
    profile = clamp({("cfp", "a"): 9.0, ("open", "b"): 1.0, ("sys", "c"): 1.0}, RULES)
    assert profile is not None
    assert max(profile.values()) / sum(profile.values()) == pytest.approx(RULES.value_cap)


def test_rules_refuse_caps_that_would_allow_chains() -> None:
    with pytest.raises(ValueError, match="kind_cap < rho"):
        GroupRules(rho=0.55, kind_cap=0.6)
    with pytest.raises(ValueError, match="family_cap < rho"):
        GroupRules(rho=0.55, kind_cap=0.5, family_cap=0.6)
    with pytest.raises(ValueError, match=r"value_cap <= 0\.5 < rho"):
        GroupRules(value_cap=0.6)
    with pytest.raises(ValueError, match=r"value_cap <= 0\.5 < rho"):
        GroupRules(rho=0.5, kind_cap=0.45, family_cap=0.45)
