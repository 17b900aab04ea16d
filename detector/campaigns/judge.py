"""A group judged as a whole against the population of active accounts.

Grouping says who belongs together; it does not accuse: an honest app's users, one ISP's
customers on one browser, an enterprise's batch accounts are groups too. What makes a group
a campaign is how it behaves compared with everyone else, and no single behaviour may decide:
each indicator compares the group with the population, and a group is ``medium`` only when
at least ``medium_indicators`` of them hold at once, not all of them among ``cohort``
(young accounts with one use are a cohort as well as a campaign). Indicators that this
version measures:

- ``young``: members started using their accounts much younger than accounts usually are
  (fraudulent accounts are made for the campaign and replaced when banned);
- ``limit``: a large share of members' requests run to ``max_tokens`` (output harvested to
  the last token), far more than the population's;
- ``intent``: a large share of members' requests carry a harvesting intent, far more than the
  population's;
- ``long``: members' outputs are many times longer than accounts' usually are (distillation
  wants long completions). It says what ``limit`` says without needing ``max_tokens``, which
  many logs lack, so the two count as one indicator;
- ``sync``: a large share of members are active in the same 10-second buckets (one
  scheduler drives them: CopyCatch's lockstep), in a group of ``sync_members`` or more: an
  app backend's few accounts, or a handful of release-day sign-ups, are in step too.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class MemberFacts(NamedTuple):
    """What the judge reads of one member (from its account state)."""

    first: float  # event time of its first request
    last: float  # ... and of its latest
    created: float  # account creation time, 0 when unknown
    events: int
    harvest: float  # share of its requests with a harvesting intent
    at_limit: float  # share of its requests whose output ran to max_tokens
    output: float = 0.0  # geometric mean of its output tokens; 0 when unknown


@dataclass(frozen=True)
class Population:
    """The same facts over all active accounts, for comparison: medians over accounts, so
    campaigns (a minority of accounts) do not move the reference they are compared with."""

    median_age_s: float  # age at first request; 0 when unknown
    harvest: float  # median share over accounts
    at_limit: float
    output: float = 0.0  # median of accounts' output geometric means


@dataclass(frozen=True)
class JudgeRules:
    young_ratio: float = 0.25  # median member age at most this share of the population's
    limit_share: float = 0.3  # members' mean share of requests run to max_tokens at least ...
    limit_ratio: float = 4.0  # ... and this many times the population's
    intent_share: float = 0.3  # members' mean harvesting share at least ...
    intent_ratio: float = 2.0  # ... and this many times the population's
    long_ratio: float = 4.0  # members' median output at least this many times the population's
    sync_share: float = 0.3  # members sharing one lockstep band at least ...
    sync_members: int = 10  # ... in a group of at least this many
    medium_indicators: int = 2
    # Indicators that together do not make a campaign: young accounts using one capability
    # are also an honest cohort (a popular client's new users); a campaign shows in how it is
    # run too.
    cohort: frozenset[str] = frozenset({"young", "intent"})
    high_indicators: int = 3
    high_members: int = 10
    critical_members: int = 30
    min_events: int = 30  # fewer member requests than this: too little to judge (low)


@dataclass(frozen=True)
class Verdict:
    severity: str
    score: float
    indicators: dict[str, float]  # every indicator's group value (held or not)
    held: tuple[str, ...]  # the indicators that hold
    reasons: tuple[str, ...]


def population_of(members: Sequence[MemberFacts]) -> Population:
    """The background's medians; an account created after its first request has no age."""
    ages = [m.first - m.created for m in members if m.created and m.first >= m.created]
    return Population(
        statistics.median(ages) if ages else 0.0,
        statistics.median(m.harvest for m in members) if members else 0.0,
        statistics.median(m.at_limit for m in members) if members else 0.0,
        statistics.median(m.output for m in members) if members else 0.0,
    )


def synchrony(bands: Sequence[Sequence[str]]) -> float:
    """Share of members holding the group's commonest lockstep band (``bands``: each member's).

    >>> synchrony([["0:a", "1:b"], ["0:a", "1:c"], ["0:x", "1:y"], []])
    0.5
    """
    counts = Counter(b for member in bands for b in set(member))
    return max(counts.values()) / len(bands) if counts else 0.0


def _young(age_s: float | None, population: Population, rules: JudgeRules) -> bool:
    return (
        age_s is not None
        and population.median_age_s > 0
        and age_s <= rules.young_ratio * population.median_age_s
    )


def _long(output: float, population: Population, rules: JudgeRules) -> bool:
    return population.output > 0 and output >= rules.long_ratio * population.output


# What ties a member to its flagged group, most telling first: how its output is harvested,
# then what it asks for, then its age. A member is tied by the first tier the group holds:
# honest accounts on a campaign's egress can be young (a reseller's new customers) or ask
# what harvesters ask (an app with one use), but rarely have their output harvested too.
MEMBER_TIERS: tuple[frozenset[str], ...] = (
    frozenset({"limit", "long"}),
    frozenset({"intent"}),
    frozenset({"young"}),
)
# Indicators that say the same thing in two ways: held together, they count once.
SAME: tuple[frozenset[str], ...] = (frozenset({"limit", "long"}),)


def distinct(held: Iterable[str]) -> int:
    """How many indicators ``held`` counts as, each of ``SAME`` once.

    >>> distinct(["young", "limit", "long"]), distinct(["long"])
    (2, 1)
    """
    names = set(held)
    return len(names) - sum(len(same & names) - 1 for same in SAME if same & names)


def shows(
    member: MemberFacts, held: Sequence[str], population: Population, rules: JudgeRules
) -> bool:
    """Whether a member itself shows the group's most telling held indicators that a single
    account can show (``MEMBER_TIERS``); a member that does not shares the group's evidence
    but not how it is run (a reseller's honest customer on the campaign's egress), and is not
    flagged with it.

    >>> rules, bg = JudgeRules(), Population(400 * 86400.0, 0.05, 0.01)
    >>> shows(MemberFacts(100.0, 200.0, 0.0, 40, 0.0, 0.5), ("young", "limit"), bg, rules)
    True
    >>> shows(MemberFacts(100.0, 200.0, 0.0, 40, 0.0, 0.02), ("young", "limit"), bg, rules)
    False
    """
    known = bool(member.created) and member.first >= member.created
    checks = {
        "young": _young(member.first - member.created if known else None, population, rules),
        "limit": member.at_limit >= rules.limit_share,
        "intent": member.harvest >= rules.intent_share,
        "long": _long(member.output, population, rules),
    }
    tier = next((t for t in MEMBER_TIERS if t & set(held)), frozenset())
    return not tier or any(checks[name] for name in tier)


def judge(
    members: Sequence[MemberFacts],
    population: Population,
    rules: JudgeRules,
    sync: float = 0.0,
) -> Verdict:
    """The group's severity from the indicators that hold, with a reason for each;
    ``sync``: the members' ``synchrony``."""
    n = len(members)
    ages = [m.first - m.created for m in members if m.created]
    age = statistics.median(ages) if ages else None
    harvest = statistics.fmean(m.harvest for m in members) if n else 0.0
    limit = statistics.fmean(m.at_limit for m in members) if n else 0.0
    output = statistics.median(m.output for m in members) if n else 0.0
    days = 86400.0
    checks = {
        "young": (
            _young(age, population, rules),
            (age or 0.0) / days,
            f"members' median account age at first request {(age or 0.0) / days:.1f} d "
            f"(all accounts: {population.median_age_s / days:.1f} d)",
        ),
        "limit": (
            limit >= rules.limit_share and limit >= rules.limit_ratio * population.at_limit,
            limit,
            f"{limit:.0%} of members' requests ran to max_tokens (all accounts: {population.at_limit:.0%})",
        ),
        "long": (
            _long(output, population, rules),
            output,
            f"members' median output {output:.0f} tokens (all accounts: {population.output:.0f})",
        ),
        "intent": (
            harvest >= rules.intent_share and harvest >= rules.intent_ratio * population.harvest,
            harvest,
            f"{harvest:.0%} of members' requests carry a harvesting intent "
            f"(all accounts: {population.harvest:.0%})",
        ),
        "sync": (
            sync >= rules.sync_share and n >= rules.sync_members,
            sync,
            f"{sync:.0%} of members are active in the same 10-second moments: one scheduler drives them",
        ),
    }
    held = tuple(name for name, (ok, _, _) in checks.items() if ok)
    k = distinct(held) if sum(m.events for m in members) >= rules.min_events else 0
    if not set(held) - rules.cohort:
        k = min(k, rules.medium_indicators - 1)
    if k >= rules.high_indicators and n >= rules.critical_members:
        severity = "critical"
    elif k >= rules.high_indicators and n >= rules.high_members:
        severity = "high"
    elif k >= rules.medium_indicators:
        severity = "medium"
    else:
        severity = "low"
    score = round(min(1.0, k / distinct(checks) + 0.05 * min(n, 100) / 100), 4)
    return Verdict(
        severity,
        score,
        {name: round(value, 4) for name, (_, value, _) in checks.items()},
        held,
        tuple(checks[name][2] for name in held),
    )
