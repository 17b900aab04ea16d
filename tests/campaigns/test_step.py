"""The group stage's pure parts: the background a worker keeps, and how a move to a new
model is measured."""

from __future__ import annotations

from collections import Counter
from typing import get_args

import pytest

from detector.campaigns.evidence import FAMILY
from detector.campaigns.judge import Verdict
from detector.campaigns.step import Background, GroupStep, StepResult, member
from detector.config import GroupEvidenceKind, Settings, build_settings
from detector.detectors import Finding
from detector.errors import ConfigError
from detector.events import Alert
from detector.features import EventFeatures
from detector.io.group_store import GroupReport, IndexReply


def test_the_background_counts_an_account_once_an_hour_and_keeps_the_latest() -> None:
    background = Background(size=100)
    background.add("a", [0.0, 10.0, 0.0, 1, 0.0, 0.0])
    background.add("a", [0.0, 600.0, 0.0, 2, 1.0, 1.0])  # the same hour: not again
    assert background.size == 1
    background.add("a", [0.0, 4000.0, 0.0, 3, 1.0, 1.0])
    assert background.size == 2
    for i in range(300):
        background.add(f"b{i}", [1e6, 1e6 + 1, 1e6 - 400 * 86400.0, 5, 0.0, 0.0])
    assert background.size == 100
    population = background.population()
    assert population.median_age_s == 400 * 86400.0 and population.at_limit == 0.0


class _Store:
    def pivoted_command(self, group: str, models: list[str]) -> tuple[str, ...]:
        return ("HSET", group, "pivoted", *models)

    def announced_command(self, group: str, accounts: list[str]) -> tuple[str, ...]:
        return ("SREM", group, *accounts)

    def alerted_command(self, group: str, *recorded: object) -> tuple[object, ...]:
        return ("HSET", group, *recorded)


def _feature(account: str, ts: float, model: str) -> EventFeatures:
    return EventFeatures(account, f"{account}-{ts}", 0, ts, 0, 0, model, 0, 0, 0, None, "", "")


def _report(models: dict[str, int], models_now: dict[str, int]) -> GroupReport:
    record = {"first": "0", "pivoted": "[]"}
    return GroupReport("cmp-g", record, 10, [], [], models, 10 * 3600.0, None, None, models_now)


def _step() -> GroupStep:
    return GroupStep(_Store(), Settings())  # type: ignore[arg-type]


DAY, NOW = 86400.0, 1000 * 86400.0
FRESH = [NOW, NOW + 60, NOW - 0.5 * DAY, 40, 0.1, 0.9]  # a day old, outputs run to the limit
CUSTOMER = [NOW, NOW + 60, NOW - 700 * DAY, 40, 0.0, 0.02]  # a reseller's old customer


def _judging_step() -> GroupStep:
    """A step whose background holds 200 ordinary accounts, so groups are judged."""
    step = _step()
    for i in range(200):
        step.background.add(f"bg{i}", [NOW, NOW + 1, NOW - 400 * DAY, 5, 0.0, 0.0])
    return step


def test_a_pivot_is_compared_with_accounts_in_no_group() -> None:
    """A campaign's own requests to the new model are not "everyone's": group members'
    traffic stays out of the population, but still tells when a model was first seen."""
    step = _step()
    step._members["m1"] = "cmp-g"
    first = step._count_traffic(
        {"m1": [_feature("m1", 100.0, "new")], "b1": [_feature("b1", 200.0, "old")]}
    )
    assert first == {"new": 100.0, "old": 200.0}
    assert step._traffic == {0: Counter({"old": 1})}


def test_a_move_is_judged_on_the_newest_hour_once_it_holds_enough_requests() -> None:
    """Moved at the top of the newest hour: 75% of it, diluted to 28% over two hours by the
    hour before; judged on the hour alone. With too few requests in it, on both hours."""
    step = _step()
    step._traffic = {9: Counter({"old": 95, "new": 5})}
    base = Finding("coordinated_cluster", 0.7, "high", ("10 accounts share evidence",), {})
    index = IndexReply({}, 100, {"old": 0.0, "new": 9 * 3600.0})
    moved = _report({"old": 36, "new": 14}, {"old": 5, "new": 15})
    result = StepResult()
    step._pivot(moved, "cmp-g", base, [], index, result, 0.0)
    [alert] = result.alerts
    assert alert.type == "model_pivot" and (alert.evidence or {}).get("window_h") == 1
    assert "75% of its last hour's 20 requests to new" in alert.reasons[0]
    assert "accounts in no group sent it 5%" in alert.reasons[0]
    few = _report({"old": 36, "new": 14}, {"old": 2, "new": 8})
    result = StepResult()
    step._pivot(few, "cmp-g", base, [], index, result, 0.0)
    assert result.alerts == []  # 28% over two hours, an hour of 10 requests: neither is enough


def test_members_that_show_none_of_the_groups_indicators_are_counted_not_flagged() -> None:
    """A hydra on a reseller's egress: five fresh accounts running outputs to the limit, and
    two of the reseller's old customers that cover the same profile."""
    step = _judging_step()
    now, fresh, customer = NOW, FRESH, CUSTOMER
    table = {**{f"h{i}": fresh for i in range(5)}, "c1": customer, "c2": customer}
    report = GroupReport(
        "cmp-g", {"first": str(now)}, 7, [], sorted(table), {}, now + 60, table, {}
    )
    verdict = Verdict("high", 0.8, {}, ("young", "limit"), ("7 accounts share evidence",))
    result = StepResult()
    step._alert(report, "cmp-g", verdict, {}, IndexReply({}, 100, {}), result, 0.0)
    members = {a.subject_id for a in result.alerts if a.subject_type == "account"}
    assert members == {f"h{i}" for i in range(5)}
    [campaign] = [a for a in result.alerts if a.subject_type == "campaign"]
    assert campaign.accounts == [f"h{i}" for i in range(5)] and campaign.account_count == 5
    assert (campaign.evidence or {})["members"] == 7
    assert any("2 of 7 members" in r for r in campaign.reasons)
    # The customers stay pending: reconsidered when their behaviour changes.
    assert ("SREM", "cmp-g", *[f"h{i}" for i in range(5)]) in result.commands


def test_kind_weights_reach_the_value_weights_and_name_only_known_kinds() -> None:
    assert set(get_args(GroupEvidenceKind)) == set(FAMILY)
    settings = build_settings({"campaigns": {"groups": {"kind_weights": {"bhv": 0.25}}}})
    rules = GroupStep(None, settings).weight_rules  # type: ignore[arg-type]
    assert rules.kind_weight["bhv"] == 0.25
    assert rules.kind_weight["bill"] == 1.0
    with pytest.raises(ConfigError, match="kind_weights"):
        build_settings({"campaigns": {"groups": {"kind_weights": {"ip": 0.5}}}})
    with pytest.raises(ConfigError, match="kind_weights"):
        build_settings({"campaigns": {"groups": {"kind_weights": {"bhv": 2.0}}}})


def test_member_facts_recorded_before_outputs_were_kept_read_as_unknown_output() -> None:
    assert member([1.0, 2.0, 0.0, 5, 0.5, 0.1]).output == 0.0
    assert member([1.0, 2.0, 0.0, 5, 0.5, 0.1, 3400.0]).output == 3400.0
    assert member([1.0, 2.0, 0.0, 5, 0.5, 0.1, ["cfp:a"]]).output == 0.0
    assert member([1.0, 2.0, 0.0, 5, 0.5, 0.1, ["cfp:a"], 3400.0]).output == 3400.0


def test_a_flagged_groups_egress_is_alerted_with_its_mix() -> None:
    """Five fresh accounts of a hydra on a reseller's egress that 20 accounts use: a mixed
    source, not one to block; the same egress used by the hydra alone can be throttled."""
    egress, client = "asnua:64500|relay", "cfp:x"
    fresh = [*FRESH, [egress, client], 3000.0]
    table = {f"h{i}": fresh for i in range(5)}
    profile = {egress: 1.0, client: 1.0}
    verdict = Verdict("high", 0.8, {}, ("young", "limit"), ("5 accounts share evidence",))

    def sources(holders: int) -> list[Alert]:
        step = _judging_step()
        step._df[egress] = holders
        report = GroupReport(
            "cmp-g", {"first": str(NOW)}, 5, [], sorted(table), {}, NOW + 60, table, profile
        )
        result = StepResult()
        step._alert(report, "cmp-g", verdict, {}, IndexReply({}, 100, {}), result, 0.0)
        return [a for a in result.alerts if a.subject_type == "source"]

    [mixed] = sources(20)
    assert mixed.type == "campaign_source" and mixed.subject_id == egress
    assert mixed.severity == "medium" and mixed.account_count == 5
    assert (mixed.evidence or {})["account_share"] == 0.25
    assert any("do not block the source" in r for r in mixed.reasons)
    [mostly] = sources(5)
    assert mostly.severity == "high"
    assert sources(100) == []  # 5% of its accounts: not the campaign's source
