"""Alerts: contract-valid records, stable ids, cooldown and escalation per account and type."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import orjson
import pytest

from detector import __version__
from detector.alerting import account_alert, alert_id, mark_emitted, should_emit
from detector.contract import ALERT_SCHEMA, validator
from detector.detectors import Finding
from detector.state.account import AccountState, Distinct, Snapshot

SNAP = Snapshot(
    account_id="acct-7",
    event_id="evt-99",
    ts=1_700_003_600.25,
    events=512,
    first_seen=1_700_000_000.0,
    account_age_s=3600.25,
    requests=(12.34, 480.06, 512.0),
    tokens=(100.0, 4000.0, 5000.0),
    rate_per_hour=300.0,
    distinct=Distinct(ips=3, models=2, user_agents=1),
    completed_hour=None,
    late=False,
)


def finding(severity: str = "medium", type_: str = "volume_spike", score: float = 0.7) -> Finding:
    return Finding(
        type=type_,
        score=score,
        severity=severity,
        reasons=("480 requests in the last hour",),
        evidence={"ratio": 48.0},
    )


def build(f: Finding | None = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    return account_alert(SNAP, f or finding(), context or {}, emitted_at=1_700_009_999.0)


def test_alert_validates_against_contract() -> None:
    ctx = {"anomaly": {"score": 0.42, "features": {"log_req_1h": 6.1}}}
    alert = build(context=ctx)
    validator(ALERT_SCHEMA)(alert)
    orjson.dumps(alert)  # serialisable as it is sent
    assert alert["subject_type"] == "account"
    assert alert["subject_id"] == "acct-7"
    assert alert["type"] == "volume_spike"
    assert alert["severity"] == "medium"
    assert alert["ts"] == SNAP.ts
    assert alert["emitted_at"] == 1_700_009_999.0
    assert alert["first_seen_ts"] == SNAP.first_seen
    assert alert["event_count"] == 512
    assert alert["detector_version"] == __version__
    assert alert["reasons"] == ["480 requests in the last hour"]
    ev = alert["evidence"]
    assert ev["ratio"] == 48.0
    assert ev["anomaly"] == ctx["anomaly"]
    assert ev["window_requests"] == [12.3, 480.1, 512.0]
    assert ev["distinct"] == {"ips": 3, "models": 2, "user_agents": 1}


@pytest.mark.parametrize("score", [-0.5, 0.0, 1.0, 7.0])
def test_score_is_clamped_into_the_contract_range(score: float) -> None:
    alert = build(finding(score=score))
    validator(ALERT_SCHEMA)(alert)
    assert alert["score"] == min(1.0, max(0.0, score))


def test_contract_validator_rejects_a_broken_alert() -> None:
    alert = build()
    alert["reasons"] = []
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validator(ALERT_SCHEMA)(alert)


def test_finding_evidence_is_not_mutated() -> None:
    f = finding()
    build(f, {"anomaly": {"score": 0.1}})
    assert f.evidence == {"ratio": 48.0}


def test_alert_id_stable_for_same_inputs() -> None:
    assert build()["alert_id"] == build()["alert_id"]
    assert build(finding("high", score=0.9))["alert_id"] == build()["alert_id"]  # same trigger
    assert alert_id("account", "a", "t", "e1") == alert_id("account", "a", "t", "e1")


def test_alert_id_differs_for_other_trigger_or_subject() -> None:
    base = alert_id("account", "a", "volume_spike", "e1")
    assert alert_id("account", "a", "volume_spike", "e2") != base
    assert alert_id("account", "b", "volume_spike", "e1") != base
    assert alert_id("account", "a", "anomaly", "e1") != base
    assert alert_id("campaign", "a", "volume_spike", "e1") != base
    # the separator keeps field boundaries: no collision by shifting characters
    assert alert_id("account", "ab", "c", "e") != alert_id("account", "a", "bc", "e")
    assert build(finding(type_="anomaly"))["alert_id"] != build()["alert_id"]


def test_cooldown_suppresses_same_type_within_cooldown() -> None:
    state = AccountState()
    f = finding("medium")
    assert should_emit(state, f, 1000.0, cooldown_s=3600)
    mark_emitted(state, f, 1000.0)
    assert state.cooldowns["volume_spike"] == (1000.0, f.rank)
    assert not should_emit(state, f, 1000.0, 3600)
    assert not should_emit(state, f, 4599.9, 3600)
    assert should_emit(state, f, 4600.0, 3600)


def test_cooldown_is_per_type() -> None:
    state = AccountState()
    mark_emitted(state, finding("medium"), 1000.0)
    assert should_emit(state, finding("low", type_="anomaly"), 1001.0, 3600)


def test_escalation_breaks_the_cooldown_but_not_a_downgrade() -> None:
    state = AccountState()
    mark_emitted(state, finding("medium"), 1000.0)
    assert not should_emit(state, finding("low"), 1010.0, 3600)
    assert not should_emit(state, finding("medium"), 1010.0, 3600)
    assert should_emit(state, finding("high"), 1010.0, 3600)
    mark_emitted(state, finding("high"), 1010.0)
    assert not should_emit(state, finding("high"), 1020.0, 3600)
    assert not should_emit(state, finding("medium"), 1020.0, 3600)
    assert should_emit(state, finding("critical"), 1020.0, 3600)


def test_zero_cooldown_always_emits() -> None:
    state = AccountState()
    mark_emitted(state, finding(), 1000.0)
    assert should_emit(state, finding(), 1000.0, 0.0)


def test_cooldown_survives_serialisation() -> None:
    state = AccountState()
    mark_emitted(state, finding("high"), 1234.5)
    again = AccountState.from_bytes(state.to_bytes(), 0)
    assert again.cooldowns == {"volume_spike": (1234.5, 2)}
    assert not should_emit(again, finding("high"), 1300.0, 3600)
