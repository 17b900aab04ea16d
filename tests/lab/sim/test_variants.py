"""Each adversary variant changes the surface it claims to, and each honest trap looks like
what it imitates. Small hand-made scenarios: one group each, one day."""

from __future__ import annotations

import collections
import itertools
import re
import statistics
from typing import Any

import pytest

from detector_lab.sim.generate import (
    DAY_S,
    HOSTING,
    HOUR_S,
    MOBILE,
    RESELLER,
    RESELLER_AGENT,
    RESIDENTIAL,
    Traffic,
    simulate,
)
from detector_lab.sim.scenario import Scenario

RELEASE_H = 6.0


def _run(
    campaign: dict[str, Any] | None = None, population: dict[str, Any] | None = None
) -> Traffic:
    return simulate(
        Scenario.model_validate(
            {
                "name": "knobs",
                "seed": 3,
                "start": "2026-06-01T00:00:00Z",
                "days": 1.0,
                "models": [
                    {"name": "old", "released_at_h": -4000},
                    {"name": "new", "released_at_h": RELEASE_H},
                ],
                "campaigns": [{"name": "c", **campaign}] if campaign else [],
                "populations": [{"name": "p", **population}] if population else [],
                "half": "test",
            }
        )
    )


def _by_account(traffic: Traffic) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in traffic.events:
        out[e["account_id"]].append(e)
    return out


def _asns(pools: list[tuple[str, int, str]]) -> set[int]:
    return {asn for _, asn, _ in pools}


LOW = {"kind": "low_and_slow", "accounts": 20, "daily_requests": 60}
LOCKSTEP = {
    "kind": "lockstep",
    "accounts": 12,
    "hourly_requests": 30,
    "start_h": 0,
    "duration_h": 24,
}


def _synchronised_share(traffic: Traffic, accounts: int) -> float:
    buckets = collections.Counter(int(e["ts"] // 10) for e in traffic.events)
    together = sum(n for n in buckets.values() if n >= accounts // 2)
    return together / len(traffic.events)


def test_human_pacing_breaks_the_tick_and_sleeps_at_night() -> None:
    native = _run(LOCKSTEP)
    human = _run({**LOCKSTEP, "pacing": "human", "timezone_h": 8.0, "days_off": 0.0})
    assert _synchronised_share(native, 12) > 0.8
    assert _synchronised_share(human, 12) < 0.1
    night = [e for e in human.events if ((e["ts"] / HOUR_S) + 8.0) % 24 < 6]
    assert len(night) / len(human.events) < 0.1  # 25% of the day, a few percent of the traffic
    turns = [e["n_messages"] for e in human.events]
    assert max(turns) > 1  # sessions of several requests


def test_agentic_sessions_are_streamed_tool_loops() -> None:
    traffic = _run({**LOW, "sessions": "agentic", "agentic_turns": 8})
    events = traffic.events
    assert all(e["stream"] and e["tools"] >= 4 for e in events)
    assert statistics.mean(e["n_messages"] for e in events) > 5
    deep = [e for e in events if e["n_messages"] >= 9]
    assert deep and min(e["input_tokens"] for e in deep) > 4 * 350


def test_random_params_vary_sampling_and_streaming() -> None:
    fixed, varied = _run(LOW).events, _run({**LOW, "params": "random"}).events
    assert {(e["temperature"], e["max_tokens"], e["stream"]) for e in fixed} == {(0.0, 4096, False)}
    assert len({e.get("temperature") for e in varied}) >= 4
    assert len({e.get("max_tokens") for e in varied}) >= 4
    assert 0.5 < statistics.mean(e["stream"] for e in varied) < 0.9


def test_rotated_clients_change_agent_and_fingerprint_every_session() -> None:
    traffic = _run({**LOW, "clients": "rotated"})
    assert len({e["client_fingerprint"] for e in traffic.events}) == len(traffic.events)
    assert len({e["user_agent"] for e in traffic.events}) >= 6


@pytest.mark.parametrize(("proxy", "pools"), [("residential", RESIDENTIAL), ("mobile", MOBILE)])
def test_proxies_exit_from_their_networks(proxy: str, pools: list) -> None:
    traffic = _run({**LOCKSTEP, "proxy": proxy})
    assert {e["asn"] for e in traffic.events} <= _asns(pools)
    assert len({e["source_ip"] for e in traffic.events}) > len(traffic.events) // 2


def test_reseller_pool_looks_like_the_resellers_customers() -> None:
    traffic = _run({**LOW, "pool": "reseller"})
    assert all(e["source_ip"].startswith(RESELLER[0] + ".") for e in traffic.events)
    assert {e["user_agent"] for e in traffic.events} == {RESELLER_AGENT}
    for events in _by_account(traffic).values():
        assert len({e["client_fingerprint"] for e in events}) == 1  # a key per customer
    assert len({e["client_fingerprint"] for e in traffic.events}) == 20


@pytest.mark.parametrize(("payment", "instruments"), [("shared", 1), ("per_account", 20)])
def test_payment_is_shared_or_one_per_account(payment: str, instruments: int) -> None:
    traffic = _run({**LOW, "payment": payment})
    assert len({e["billing_fingerprint"] for e in traffic.events}) == instruments
    for events in _by_account(traffic).values():
        assert len({e["billing_fingerprint"] for e in events}) == 1


def test_slow_ramp_grows_volume() -> None:
    traffic = _run({**LOW, "ramp_h": 20.0})
    start = min(e["ts"] for e in traffic.events)
    first = sum(e["ts"] < start + 4 * HOUR_S for e in traffic.events)
    last = sum(e["ts"] >= start + 20 * HOUR_S for e in traffic.events)
    assert first * 2 < last


def test_hydra_lifetimes_and_replacement_delay() -> None:
    traffic = _run(
        {"kind": "hydra", "accounts": 6, "hourly_requests": 30, "lifetime_h": 2.0,
         "replace_after_s": 600.0}
    )  # fmt: skip
    slots: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for account, events in _by_account(traffic).items():
        slots[account.rsplit("-s", 1)[1]].append((events[0]["ts"], events[-1]["ts"]))
    gaps = []
    for lives in slots.values():
        lives.sort()
        assert all(end - begin <= 1.3 * 2 * HOUR_S for begin, end in lives)
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(lives)]
    assert 120 < statistics.median(gaps) < 1800  # replaced within minutes, not at once


def test_huge_campaigns_spread_thin() -> None:
    traffic = _run({**LOW, "accounts": 1500, "rate_factor": 0.03})
    per_account = [len(v) for v in _by_account(traffic).values()]
    assert len(per_account) > 500 and statistics.mean(per_account) < 3


_SCRIPTS = {"zh": r"[\u4e00-\u9fff]", "ru": r"[\u0400-\u04ff]", "es": r"[áéíóúñ¿¡]"}


@pytest.mark.parametrize("language", ["zh", "ru", "es"])
def test_campaign_language(language: str) -> None:
    traffic = _run({**LOW, "language": language})
    written = [bool(re.search(_SCRIPTS[language], e["prompt"])) for e in traffic.events]
    assert statistics.mean(written) > 0.9


def test_paraphrase_removes_shared_openings() -> None:
    def openings(traffic: Traffic) -> float:
        heads = [e["prompt"][:60] for e in traffic.events]  # the house style and more
        return len(set(heads)) / len(heads)

    assert openings(_run({**LOW, "paraphrase": True})) > 3 * openings(_run(LOW))


def test_persona_sends_one_system_prompt_and_one_template() -> None:
    traffic = _run(
        {"kind": "residential_mimic", "accounts": 10, "capabilities": ["reasoning"],
         "system_prompt": "tutoring", "one_template": True}
    )  # fmt: skip
    assert len({e["system_prompt"] for e in traffic.events}) == 1
    assert len({e["prompt"][:25] for e in traffic.events}) < len(traffic.events) / 10


def test_coding_agent_users_share_one_client() -> None:
    traffic = _run(
        population={"kind": "individual", "accounts": 30, "shared_client": "kilo-cli/1.8.0",
                    "request_kind": "coding_agent", "chat_turns": 8, "max_turns": 30, "daily_requests": 40,
                    "turn_gap_s": [2, 30], "stream_share": 0.97, "tool_share": 0.9}
    )  # fmt: skip
    events = traffic.events
    assert len(_by_account(traffic)) > 20
    assert {e["user_agent"] for e in events} == {"kilo-cli/1.8.0"}
    assert len({e["client_fingerprint"] for e in events}) == 1
    assert len({e["system_prompt"] for e in events}) == 1 and len(events[0]["system_prompt"]) > 200
    assert statistics.mean(e["tools"] > 0 for e in events) > 0.8
    assert statistics.mean(e["n_messages"] for e in events) > 5
    assert len({e["billing_fingerprint"] for e in events}) == len(_by_account(traffic))


def test_campus_nat_puts_many_accounts_behind_few_addresses() -> None:
    traffic = _run(population={"kind": "individual", "accounts": 80, "network": "nat",
                               "egress_addresses": 3})  # fmt: skip
    assert len(_by_account(traffic)) > 60
    assert len({e["source_ip"] for e in traffic.events}) <= 3


def test_early_adopters_sign_up_and_move_on_release_day() -> None:
    traffic = _run(
        population={"kind": "individual", "accounts": 80, "new_model_share": 0.6,
                    "release_joiners": 0.5, "release_boost": 2.5}
    )  # fmt: skip
    release = traffic.events[0]["ts"] // DAY_S * DAY_S + RELEASE_H * HOUR_S
    joined = [ev for ev in _by_account(traffic).values() if ev[0]["account_created_ts"] >= release]
    assert len(joined) > 20
    assert all(e["ts"] >= e["account_created_ts"] for ev in joined for e in ev)
    after = [e for e in traffic.events if e["ts"] > release]
    assert 0.45 < statistics.mean(e["model"] == "new" for e in after) < 0.75
    hourly_before = sum(e["ts"] < release for e in traffic.events) / RELEASE_H
    assert len(after) / (24 - RELEASE_H) > 1.5 * hourly_before


def test_cloud_neighbours_rent_where_campaigns_rent() -> None:
    traffic = _run(population={"kind": "app_backend", "accounts": 3, "network": "hosting",
                               "request_kind": "chat", "sampling": "fixed"})  # fmt: skip
    assert {e["asn"] for e in traffic.events} <= _asns(HOSTING)
    for events in _by_account(traffic).values():
        assert len({(e["temperature"], e["max_tokens"]) for e in events}) == 1
