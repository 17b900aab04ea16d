"""The simulator: deterministic, contract-valid, and each population behaves as described."""

from __future__ import annotations

import collections
import statistics

import pytest

from detector.contract import QUERY_EVENT_SCHEMA, validator
from detector_lab.sim.generate import HOUR_S, RESELLER, simulate
from detector_lab.sim.scenario import load_scenario


@pytest.fixture(scope="module")
def scenario():
    return load_scenario("ci")


@pytest.fixture(scope="module")
def traffic(scenario):
    return simulate(scenario)


def _by_group(traffic, group: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for e in traffic.events:
        if traffic.labels[e["account_id"]]["group"] == group:
            out[e["account_id"]].append(e)
    return out


def test_deterministic_for_a_seed(scenario, traffic) -> None:
    again = simulate(scenario)
    assert again.events == traffic.events and again.labels == traffic.labels
    other = simulate(scenario.model_copy(update={"seed": scenario.seed + 1}))
    assert other.events != traffic.events


def test_events_are_contract_valid_and_sorted(scenario, traffic) -> None:
    check = validator(QUERY_EVENT_SCHEMA)
    for e in traffic.events:
        check(e)
    ts = [e["ts"] for e in traffic.events]
    assert ts == sorted(ts)
    assert scenario.start_ts <= ts[0] and ts[-1] < scenario.start_ts + scenario.days * 86400
    assert len({e["event_id"] for e in traffic.events}) == len(traffic.events)


def test_every_group_is_labelled(scenario, traffic) -> None:
    groups = {v["group"]: v["label"] for v in traffic.labels.values()}
    assert {p.name for p in scenario.populations} <= set(groups)
    assert {c.name for c in scenario.campaigns} <= set(groups)
    assert all(groups[p.name] == "benign" for p in scenario.populations)
    assert all(groups[c.name] == "malicious" for c in scenario.campaigns)
    assert set(traffic.labels) == {e["account_id"] for e in traffic.events}


def test_honest_prompts_are_diverse(traffic) -> None:
    prompts = [
        e["prompt"]
        for events in _by_group(traffic, "individuals").values()
        for e in events
        if e["n_messages"] == 1
    ]
    assert len(prompts) > 200
    assert len(set(prompts)) / len(prompts) > 0.9
    lengths = [len(p) for p in prompts]
    assert statistics.pstdev(lengths) > 50  # many lengths, not one template


def test_lockstep_campaign_is_synchronised_and_shares_payment(scenario, traffic) -> None:
    accounts = _by_group(traffic, "reasoning_rubric")
    campaign = next(c for c in scenario.campaigns if c.name == "reasoning_rubric")
    billing = {e["billing_fingerprint"] for events in accounts.values() for e in events}
    assert len(billing) <= campaign.billing_fingerprints
    seconds = collections.Counter(
        int(e["ts"] // 10) for events in accounts.values() for e in events
    )
    busy = [n for n in seconds.values() if n >= len(accounts) // 2]
    assert len(busy) > 10  # many 10-second buckets where most accounts fire together
    prefixes = {e["source_ip"].rsplit(".", 2)[0] for events in accounts.values() for e in events}
    assert len(prefixes) <= 3  # a hosting provider's ranges


def test_hydra_accounts_are_short_lived_behind_the_reseller_and_pivot(scenario, traffic) -> None:
    accounts = _by_group(traffic, "hydra_reseller")
    campaign = next(c for c in scenario.campaigns if c.name == "hydra_reseller")
    spans = [(ev[-1]["ts"] - ev[0]["ts"]) / HOUR_S for ev in accounts.values() if len(ev) > 5]
    assert max(spans) <= 1.4 * campaign.lifetime_h
    assert len(accounts) > campaign.accounts  # replaced as they die
    assert all(e["source_ip"].startswith(RESELLER[0]) for ev in accounts.values() for e in ev)
    release = scenario.start_ts + scenario.newest.released_at_h * HOUR_S
    after = [
        e
        for ev in accounts.values()
        for e in ev
        if e["ts"] > release + (campaign.pivot_delay_h + 1) * HOUR_S
    ]
    share_new = sum(e["model"] == scenario.newest.name for e in after) / len(after)
    assert 0.35 < share_new < 0.65
    before = [e for ev in accounts.values() for e in ev if e["ts"] < release]
    assert not any(e["model"] == scenario.newest.name for e in before)


def test_low_and_slow_accounts_stay_under_volume_thresholds(traffic) -> None:
    for events in _by_group(traffic, "low_and_slow").values():
        per_hour = collections.Counter(int(e["ts"] // HOUR_S) for e in events)
        assert max(per_hour.values()) < 20
    fingerprints = {
        e["client_fingerprint"] for ev in _by_group(traffic, "low_and_slow").values() for e in ev
    }
    assert len(fingerprints) <= 2


def test_enterprise_org_shares_billing_and_honest_users_do_not(traffic) -> None:
    by_org = collections.defaultdict(set)
    for events in _by_group(traffic, "enterprise_batch").values():
        by_org[events[0]["org_id"]].add(events[0]["billing_fingerprint"])
    assert by_org and all(len(b) == 1 for b in by_org.values())
    individuals = _by_group(traffic, "individuals")
    assert len({ev[0]["billing_fingerprint"] for ev in individuals.values()}) == len(individuals)


def test_scale_multiplies_accounts(scenario) -> None:
    small = scenario.scaled(0.5)
    assert [p.accounts for p in small.populations] == [
        max(1, round(p.accounts * 0.5)) for p in scenario.populations
    ]
