"""The group judge: no single behaviour makes a group medium; honest look-alikes stay low."""

from __future__ import annotations

import pytest

from detector.campaigns.judge import (
    JudgeRules,
    MemberFacts,
    Population,
    judge,
    population_of,
    shows,
)

DAY = 86400.0
RULES = JudgeRules()
BACKGROUND = Population(median_age_s=400 * DAY, harvest=0.05, at_limit=0.01, output=250.0)


def members(
    n: int,
    *,
    age_days: float,
    harvest: float,
    at_limit: float,
    events: int = 40,
    output: float = 250.0,
) -> list[MemberFacts]:
    start = 1_000 * DAY
    return [
        MemberFacts(start, start + 3600, start - age_days * DAY, events, harvest, at_limit, output)
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    ("name", "group"),
    [
        # An open-source coding agent's users: one client, tools on most requests.
        ("coding agent users", members(55, age_days=450, harvest=0.76, at_limit=0.0)),
        # An enterprise's batch accounts: one template, long outputs but not to the limit.
        ("enterprise batch", members(8, age_days=800, harvest=0.0, at_limit=0.05)),
        # Release-day sign-ups of one ISP: new accounts, ordinary requests.
        ("early adopters", members(5, age_days=0.2, harvest=0.0, at_limit=0.0)),
        # A grading app: rubric prompts, old accounts.
        ("essay graders", members(3, age_days=500, harvest=0.4, at_limit=0.01)),
        # A popular coding client's release-day sign-ups: new accounts, agentic-coding prompts.
        ("new coding agent users", members(16, age_days=0.5, harvest=0.8, at_limit=0.02)),
        # A benchmark run asking for step-by-step reasoning: longer outputs than most.
        ("eval harness", members(5, age_days=300, harvest=0.9, at_limit=0.0, output=650.0)),
    ],
)
def test_honest_look_alikes_stay_low(name: str, group: list[MemberFacts]) -> None:
    verdict = judge(group, BACKGROUND, RULES)
    assert verdict.severity == "low", (name, verdict.held)


def test_two_indicators_make_medium_three_with_size_make_high_and_critical() -> None:
    young_limit = members(5, age_days=2, harvest=0.0, at_limit=0.6)
    assert judge(young_limit, BACKGROUND, RULES).held == ("young", "limit")
    assert judge(young_limit, BACKGROUND, RULES).severity == "medium"
    all_three = members(12, age_days=2, harvest=0.8, at_limit=0.6)
    assert judge(all_three, BACKGROUND, RULES).severity == "high"
    assert (
        judge(members(40, age_days=2, harvest=0.8, at_limit=0.6), BACKGROUND, RULES).severity
        == "critical"
    )


def test_a_cohort_pair_alone_is_low_and_counts_beside_another_indicator() -> None:
    cohort = judge(members(16, age_days=0.5, harvest=0.8, at_limit=0.02), BACKGROUND, RULES)
    assert cohort.held == ("young", "intent") and cohort.severity == "low"
    run = judge(members(16, age_days=0.5, harvest=0.8, at_limit=0.6), BACKGROUND, RULES)
    assert run.held == ("young", "limit", "intent") and run.severity == "high"
    plain = JudgeRules(cohort=frozenset())
    assert (
        judge(members(16, age_days=0.5, harvest=0.8, at_limit=0.02), BACKGROUND, plain).severity
        == "medium"
    )


def test_too_few_requests_to_judge_are_low() -> None:
    group = members(3, age_days=2, harvest=0.8, at_limit=0.6, events=5)
    assert judge(group, BACKGROUND, RULES).severity == "low"


def test_each_indicator_is_relative_to_the_background() -> None:
    group = members(5, age_days=30, harvest=0.5, at_limit=0.5)
    verdict = judge(group, BACKGROUND, RULES)
    assert verdict.held == ("young", "limit", "intent")
    assert verdict.severity == "medium"  # three indicators, but under high_members
    alike = Population(median_age_s=40 * DAY, harvest=0.4, at_limit=0.3)
    assert judge(group, alike, RULES).held == ()


def test_the_background_is_a_median_so_a_minority_does_not_move_it() -> None:
    honest = members(60, age_days=400, harvest=0.0, at_limit=0.0)
    campaign = members(40, age_days=1, harvest=1.0, at_limit=1.0)
    population = population_of(honest + campaign)
    assert population.at_limit == 0.0 and population.harvest == 0.0
    assert population.median_age_s == pytest.approx(400 * DAY)


def test_lockstep_is_an_indicator_of_its_own() -> None:
    from detector.campaigns.judge import synchrony

    group = members(12, age_days=2, harvest=0.0, at_limit=0.0)
    in_step = synchrony([["0:a", "1:b"]] * 4 + [["0:x"], []])
    assert in_step == pytest.approx(4 / 6)
    assert judge(group, BACKGROUND, RULES, in_step).held == ("young", "sync")
    assert judge(group, BACKGROUND, RULES, 0.1).held == ("young",)
    # A few accounts in step are an app backend or a release-day rush, not a scheduler.
    assert judge(group[:5], BACKGROUND, RULES, in_step).held == ("young",)


def test_long_outputs_stand_for_limit_without_max_tokens_and_count_once_with_it() -> None:
    # No max_tokens in the logs: nothing runs "to the limit", but the outputs are long.
    unlimited = members(16, age_days=0.5, harvest=0.8, at_limit=0.0, output=3400.0)
    verdict = judge(unlimited, BACKGROUND, RULES)
    assert verdict.held == ("young", "long", "intent") and verdict.severity == "high"
    assert any("median output 3400 tokens" in r for r in verdict.reasons)
    # Both say the output is harvested: one indicator, so young + limit + long is medium.
    both = judge(
        members(16, age_days=2, harvest=0.0, at_limit=0.6, output=3400.0), BACKGROUND, RULES
    )
    assert both.held == ("young", "limit", "long") and both.severity == "medium"
    assert (
        judge(
            members(16, age_days=300, harvest=0.0, at_limit=0.6, output=3400.0), BACKGROUND, RULES
        ).severity
        == "low"
    )
    # Outputs unknown everywhere (no output_tokens): never long.
    unknown = Population(median_age_s=400 * DAY, harvest=0.05, at_limit=0.01, output=0.0)
    assert "long" not in judge(unlimited, unknown, RULES).held


def test_a_member_shows_long_outputs_itself() -> None:
    long_one, short_one = (
        members(1, age_days=300, harvest=0.0, at_limit=0.0, output=3400.0)[0],
        members(1, age_days=300, harvest=0.0, at_limit=0.0)[0],
    )
    assert shows(long_one, ("long",), BACKGROUND, RULES)
    assert not shows(short_one, ("long",), BACKGROUND, RULES)


def test_a_member_is_tied_by_the_most_telling_indicator_its_group_holds() -> None:
    # An honest app on the campaign's cloud: old, short outputs, harvest-like prompts.
    app = members(1, age_days=300, harvest=0.9, at_limit=0.0)[0]
    assert not shows(app, ("young", "long", "intent"), BACKGROUND, RULES)
    assert shows(app, ("intent", "sync"), BACKGROUND, RULES)
    # A reseller's new customer: young, ordinary requests.
    customer = members(1, age_days=20, harvest=0.0, at_limit=0.0)[0]
    assert not shows(customer, ("young", "limit"), BACKGROUND, RULES)
    assert shows(customer, ("young", "sync"), BACKGROUND, RULES)
    # A harvester whose outputs run long where the group's run to the limit: the same tier.
    harvester = members(1, age_days=300, harvest=0.0, at_limit=0.0, output=3400.0)[0]
    assert shows(harvester, ("young", "limit"), BACKGROUND, RULES)
