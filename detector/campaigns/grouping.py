"""Groups as a shared profile: accounts belong together by how much weighted evidence they
share over several families, never because a chain of single shared values connects them.

A group is a profile (values with weights) and its members:

1. no value carries more than ``value_cap`` of the profile's weight and no kind of evidence
   more than ``kind_cap`` (heavier ones are clamped down to that share), so a valid profile
   holds at least two values (``value_cap`` <= 1/2) of at least two kinds (``kind_cap`` < 1),
   and ``family_cap`` does the same for families (``evidence.FAMILY``);
2. every member holds at least ``rho`` of the profile's weight. As ``rho`` is above every
   cap, every member shares at least two values of two families with the profile, and any
   two members share values carrying at least ``2 rho - 1`` of its weight.

Coverage is measured against the group's profile, not against another member, so accounts
A, B, C where A shares one value with B and B another with C never make a group, and values
outside the profile (rotating addresses, honest-looking extras) cannot dilute it. Groups are
found as CopyCatch finds lockstep groups: start from the accounts on one heavy value, take
the values most of them hold as the profile, keep the accounts that cover it, repeat.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from detector.campaigns.evidence import FAMILY, Value

EPSILON = 1e-9
MIN_WEIGHT = 1e-6  # lighter values are left out of profiles: they say nothing


@dataclass(frozen=True)
class GroupRules:
    rho: float = 0.6  # a member holds at least this share of its group's profile weight
    value_cap: float = 0.5  # no value above this share of a profile's weight
    kind_cap: float = 0.55  # no kind of evidence above this share
    family_cap: float = 0.55  # no family above this share (1: no cap)
    support: float = 0.5  # a profile value is held by at least this share of the members
    min_members: int = 3
    max_profile: int = 64  # values in a profile at most (the heaviest)
    rounds: int = 6  # profile/members iterations to reach a fixed point at most
    merge_share: float = 0.6  # groups merge when this share of the smaller covers the larger

    def __post_init__(self) -> None:
        if not (self.value_cap <= 0.5 < self.rho <= 1.0 and self.kind_cap < self.rho):
            raise ValueError("grouping needs value_cap <= 0.5 < rho <= 1 and kind_cap < rho")
        if self.family_cap >= self.rho:
            raise ValueError("grouping needs family_cap < rho")


@dataclass(frozen=True)
class Group:
    profile: Mapping[Value, float]  # clamped weights
    members: frozenset[str]

    @property
    def key(self) -> tuple[Value, ...]:
        """The two heaviest profile values: the same campaign seeded twice gets the same key."""
        ranked = sorted(self.profile.items(), key=lambda kv: (-kv[1], kv[0]))
        return tuple(sorted(v for v, _ in ranked[:2]))


def coverage(values: Iterable[Value] | frozenset[Value], profile: Mapping[Value, float]) -> float:
    """Share of the profile's weight that ``values`` hold.

    >>> coverage({("cfp", "a"), ("net", "x")}, {("cfp", "a"): 2.0, ("open", "b"): 1.0, ("sys", "c"): 1.0})
    0.5
    """
    total = sum(profile.values())
    if total <= 0:
        return 0.0
    held = values if isinstance(values, (set, frozenset)) else set(values)
    return sum(w for v, w in profile.items() if v in held) / total


def cap_shares(amounts: Mapping[str, float], cap: float) -> dict[str, float] | None:
    """``amounts`` with the largest lowered to one level ``c`` such that none is more than
    ``cap`` of the new total (water-filling); None when too few are positive for that.

    >>> {k: round(v, 3) for k, v in cap_shares({"a": 8.0, "b": 1.0, "c": 1.0}, 0.4).items()}
    {'a': 1.333, 'b': 1.0, 'c': 1.0}
    >>> cap_shares({"a": 8.0, "b": 1.0}, 0.4) is None
    True
    """
    ranked = sorted((a for a in amounts.values() if a > 0), reverse=True)
    rest = sum(ranked)
    for k, largest in enumerate(ranked):  # k amounts above the level, ``largest`` the next one
        if 1 - cap * k <= EPSILON:
            return None
        level = cap * rest / (1 - cap * k)
        if largest <= level + EPSILON:
            return {key: min(a, level) for key, a in amounts.items()}
        rest -= largest
    return None


def clamp(weights: Mapping[Value, float], rules: GroupRules) -> dict[Value, float] | None:
    """The profile with no family, kind or value above its cap's share of the weight; None
    when it has too few values, kinds or families for that."""
    profile = {v: w for v, w in weights.items() if w >= MIN_WEIGHT}
    levels = ((_family, rules.family_cap), (_kind, rules.kind_cap), (_itself, rules.value_cap))
    for _ in range(8):
        for part, cap in levels:
            if cap >= 1.0:
                continue
            totals: dict[str, float] = defaultdict(float)
            for v, w in profile.items():
                totals[part(v)] += w
            capped = cap_shares(totals, cap)
            if capped is None:
                return None
            profile = {v: w * capped[part(v)] / totals[part(v)] for v, w in profile.items()}
        if all(_share(profile, part) <= cap + EPSILON for part, cap in levels):
            return profile
    return None


def _family(v: Value) -> str:
    return FAMILY[v[0]]


def _kind(v: Value) -> str:
    return v[0]


def _itself(v: Value) -> str:
    return f"{v[0]}:{v[1]}"


def _share(profile: Mapping[Value, float], part: Callable[[Value], str]) -> float:
    """The largest share of the profile's weight on one part (family, kind or value)."""
    totals: dict[str, float] = defaultdict(float)
    for v, w in profile.items():
        totals[part(v)] += w
    total = sum(totals.values())
    return max(totals.values()) / total if total > 0 else 1.0


def profile_of(
    members: Iterable[frozenset[Value]], weights: Mapping[Value, float], rules: GroupRules
) -> dict[Value, float] | None:
    """The clamped profile of a set of accounts: the weighted values at least ``support`` of
    them hold, the ``max_profile`` heaviest (ties by value)."""
    summaries = list(members)
    held = Counter(v for s in summaries for v in s if weights.get(v, 0.0) >= MIN_WEIGHT)
    need = rules.support * len(summaries)
    chosen = sorted(
        ((v, weights[v]) for v, n in held.items() if n >= need), key=lambda kv: (-kv[1], kv[0])
    )
    return clamp(dict(chosen[: rules.max_profile]), rules)


def form(
    candidates: Mapping[str, frozenset[Value]], weights: Mapping[Value, float], rules: GroupRules
) -> Group | None:
    """A group among ``candidates`` (account -> its evidence), or None.

    Alternates profile and members until neither changes (``rounds`` at most); the members
    returned are exactly the candidates that cover the returned profile.
    """
    members = set(candidates)
    profile: dict[Value, float] | None = None
    for _ in range(rules.rounds):
        profile = profile_of((candidates[a] for a in sorted(members)), weights, rules)
        if profile is None:
            return None
        covering = {a for a, s in candidates.items() if coverage(s, profile) >= rules.rho}
        if covering == members or len(covering) < rules.min_members:
            break
        members = covering
    if profile is None:
        return None
    final = frozenset(a for a, s in candidates.items() if coverage(s, profile) >= rules.rho)
    if len(final) < rules.min_members:
        return None
    return Group(profile, final)


def cluster(
    summaries: Mapping[str, frozenset[Value]], weights: Mapping[Value, float], rules: GroupRules
) -> list[Group]:
    """Every group among the accounts, each account in at most one (hindsight: all at once).

    Seeds are the weighted values, the largest mass (holders x weight) first; each forms a
    group among its holders not yet placed. Then every unplaced account joins the group whose
    profile it covers best (at least ``rho``), and groups merge when ``merge_share`` of the
    smaller one's members cover the larger one's profile.
    """
    holders: dict[Value, list[str]] = defaultdict(list)
    for account in sorted(summaries):
        for v in summaries[account]:
            if weights.get(v, 0.0) >= MIN_WEIGHT:
                holders[v].append(account)
    seeds = sorted(holders, key=lambda v: (-len(holders[v]) * weights[v], v))
    placed: set[str] = set()
    groups: list[Group] = []
    for seed in seeds:
        free = [a for a in holders[seed] if a not in placed]
        if len(free) < rules.min_members:
            continue
        group = form({a: summaries[a] for a in free}, weights, rules)
        if group is not None:
            groups.append(group)
            placed |= group.members
    groups = _join(groups, summaries, placed, rules)
    return merge(groups, summaries, weights, rules)


def _join(
    groups: list[Group],
    summaries: Mapping[str, frozenset[Value]],
    placed: set[str],
    rules: GroupRules,
) -> list[Group]:
    joining: dict[int, set[str]] = defaultdict(set)
    for account, values in summaries.items():
        if account in placed:
            continue
        best, best_cov = -1, rules.rho
        for i, g in enumerate(groups):
            cov = coverage(values, g.profile)
            if cov >= best_cov and (best < 0 or cov > best_cov):
                best, best_cov = i, cov
        if best >= 0:
            joining[best].add(account)
    return [Group(g.profile, g.members | joining[i]) for i, g in enumerate(groups)]


def merge(
    groups: list[Group],
    summaries: Mapping[str, frozenset[Value]],
    weights: Mapping[Value, float],
    rules: GroupRules,
) -> list[Group]:
    """Groups merged while ``merge_share`` of a smaller group's members cover a larger one's
    profile; a merged group is formed again over both groups' members (and dropped back to
    the two if that fails). A group-level test: one shared value never merges two groups."""
    out = sorted(groups, key=lambda g: (-len(g.members), g.key))
    merged = True
    while merged:
        merged = False
        for i, big in enumerate(out):
            for j in range(i + 1, len(out)):
                small = out[j]
                covering = sum(
                    coverage(summaries[a], big.profile) >= rules.rho for a in small.members
                )
                if covering < rules.merge_share * len(small.members):
                    continue
                both = big.members | small.members
                group = form({a: summaries[a] for a in both}, weights, rules)
                if group is None or len(group.members) < len(big.members):
                    continue
                out = [g for k, g in enumerate(out) if k not in (i, j)] + [group]
                out.sort(key=lambda g: (-len(g.members), g.key))
                merged = True
                break
            if merged:
                break
    return out
