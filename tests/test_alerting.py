"""Alerts: contract-valid as published, the same bytes as before they were typed, stable ids,
cooldown and escalation per account and type."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import __version__
from detector.alerting import (
    account_alert,
    alert_id,
    campaign_alert,
    member_alert,
    should_emit,
    source_alert,
    start_cooldown,
)
from detector.contract import ALERT_SCHEMA, validator
from detector.detectors import SEVERITIES, Finding
from detector.events import Alert
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


EMITTED_AT = 1_700_009_999.0


def finding(severity: str = "medium", type_: str = "volume_spike", score: float = 0.7) -> Finding:
    return Finding(
        type=type_,
        score=score,
        severity=severity,
        reasons=("480 requests in the last hour",),
        evidence={"ratio": 48.0},
    )


def build(f: Finding | None = None, context: dict[str, Any] | None = None) -> Alert:
    return account_alert(SNAP, f or finding(), context or {}, emitted_at=EMITTED_AT)


def published(alert: Alert) -> dict[str, Any]:
    """The alert as a consumer reads it, checked against the contract."""
    message = orjson.loads(alert.encode())
    validator(ALERT_SCHEMA)(message)
    return message


def every_kind(f: Finding) -> dict[str, Alert]:
    """One alert of each builder, about ``f``."""
    return {
        "account": build(f, {"anomaly": {"score": 0.42}}),
        "member": member_alert("acct-7", "camp-1", f, SNAP.ts, EMITTED_AT),
        "campaign": campaign_alert(
            "camp-1",
            f,
            trigger="12",
            accounts=["acct-7", "acct-8"],
            members=12,
            ts=SNAP.ts,
            first_seen=1_700_000_000.0,
            events=340,
            emitted_at=EMITTED_AT,
        ),
        "source": source_alert(
            "range:185.199.0.0/16",
            f,
            trigger="0.9",
            campaign_accounts=40,
            requests=900,
            ts=SNAP.ts,
            emitted_at=EMITTED_AT,
        ),
    }


def test_alert_validates_against_contract() -> None:
    ctx = {"anomaly": {"score": 0.42, "features": {"log_req_1h": 6.1}}}
    alert = build(context=ctx)
    message = published(alert)
    assert not {"accounts", "account_count", "campaign_id"} & set(message)  # None: left out
    assert alert.subject_type == "account"
    assert alert.subject_id == "acct-7"
    assert alert.type == "volume_spike"
    assert alert.severity == "medium"
    assert alert.ts == SNAP.ts
    assert alert.emitted_at == EMITTED_AT
    assert alert.first_seen_ts == SNAP.first_seen
    assert alert.event_count == 512
    assert alert.detector_version == __version__
    assert alert.reasons == ["480 requests in the last hour"]
    ev = alert.evidence
    assert ev is not None
    assert ev["ratio"] == 48.0
    assert ev["anomaly"] == ctx["anomaly"]
    assert ev["window_requests"] == [12.3, 480.1, 512.0]
    assert ev["distinct"] == {"ips": 3, "models": 2, "user_agents": 1}


# The keys each kind of alert published, in order, when alerts were dicts: typing them
# must not change a byte of what consumers read.
KEYS = {
    "account": "alert_id ts emitted_at subject_type subject_id type severity score reasons evidence first_seen_ts event_count detector_version",
    "member": "alert_id ts emitted_at subject_type subject_id type severity score campaign_id reasons evidence detector_version",
    "campaign": "alert_id ts emitted_at subject_type subject_id type severity score accounts account_count reasons evidence first_seen_ts event_count detector_version",
    "source": "alert_id ts emitted_at subject_type subject_id type severity score accounts account_count reasons evidence first_seen_ts event_count detector_version",
}  # fmt: skip


SUBJECT_TYPES = {
    "account": "account",
    "member": "account",
    "campaign": "campaign",
    "source": "source",
}


@pytest.mark.parametrize("severity", SEVERITIES)
def test_every_kind_of_alert_is_published_as_the_contract_says(severity: str) -> None:
    for kind, alert in every_kind(finding(severity)).items():
        message = published(alert)
        assert list(message) == KEYS[kind].split(), kind
        assert message["subject_type"] == SUBJECT_TYPES[kind]


def test_member_and_source_alerts_keep_their_published_values() -> None:
    kinds = every_kind(finding("critical", type_="coordinated_cluster", score=0.95))
    member = published(kinds["member"])
    assert member["type"] == "coordinated_cluster"
    assert member["severity"] == "high"  # a member of a critical campaign
    assert member["campaign_id"] == "camp-1"
    assert member["reasons"] == ["member of campaign camp-1: 480 requests in the last hour"]
    assert member["evidence"] == {"campaign": {"ratio": 48.0}}
    assert member["alert_id"] == alert_id("account", "acct-7", "coordinated_cluster", "camp-1")
    source = published(kinds["source"])
    assert (source["accounts"], source["account_count"], source["first_seen_ts"]) == ([], 40, 0.0)
    assert source["alert_id"] == alert_id(
        "source", "range:185.199.0.0/16", "coordinated_cluster", "0.9"
    )
    campaign = published(kinds["campaign"])
    assert campaign["alert_id"] == alert_id("campaign", "camp-1", "coordinated_cluster", "12")


def as_dict_was_encoded(alert: Alert) -> bytes:
    """How the builders' dicts were published: ``orjson.dumps``, the fields they had set."""
    return orjson.dumps({k: v for k, v in msgspec.structs.asdict(alert).items() if v is not None})


def test_an_alert_is_encoded_as_its_dict_was() -> None:
    """orjson's rendering of numbers (``1e+16``, where msgspec writes ``1e16``)."""
    alert = build(Finding("volume_spike", 0.5, "low", ("r",), {"big": 1e16, "n": None}))
    assert alert.encode() == as_dict_was_encoded(alert)
    assert b'"big":1e+16' in alert.encode()


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_findings = st.builds(
    Finding,
    type=st.text(min_size=1, max_size=20),
    score=st.floats(),
    severity=st.sampled_from(SEVERITIES),
    reasons=st.lists(st.text(max_size=30), min_size=1, max_size=3).map(tuple),
    evidence=st.dictionaries(st.text(max_size=8), _json, max_size=4),
)
_finite = st.floats(min_value=0, max_value=4e9)


@given(
    _findings,
    st.text(max_size=20),
    st.text(max_size=20),
    _finite,
    _finite,
    st.lists(st.text(max_size=10), max_size=5),
    st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_finding_gives_contract_valid_alerts_of_every_kind(
    f: Finding,
    subject: str,
    trigger: str,
    ts: float,
    emitted_at: float,
    accounts: list[str],
    count: int,
) -> None:
    snap = msgspec.structs.replace(SNAP, account_id=subject, event_id=trigger, ts=ts)
    alerts = [
        account_alert(snap, f, {"anomaly": {"score": ts}}, emitted_at),
        member_alert(subject, trigger, f, ts, emitted_at),
        campaign_alert(
            subject,
            f,
            trigger=trigger,
            accounts=accounts,
            members=count,
            ts=ts,
            first_seen=ts,
            events=count,
            emitted_at=emitted_at,
        ),
        source_alert(
            subject,
            f,
            trigger=trigger,
            campaign_accounts=count,
            requests=count,
            ts=ts,
            emitted_at=emitted_at,
        ),
    ]
    for alert in alerts:
        message = published(alert)
        assert alert.encode() == as_dict_was_encoded(alert)
        assert 0.0 <= message["score"] <= 1.0
        assert message["subject_id"] == subject
        assert message["ts"] == ts


@pytest.mark.parametrize("score", [-0.5, 0.0, 1.0, 7.0])
def test_score_is_clamped_into_the_contract_range(score: float) -> None:
    alert = build(finding(score=score))
    assert published(alert)["score"] == alert.score == min(1.0, max(0.0, score))


def test_contract_validator_rejects_a_broken_alert() -> None:
    alert = msgspec.structs.replace(build(), reasons=[])
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        published(alert)


def test_finding_evidence_is_not_mutated() -> None:
    f = finding()
    build(f, {"anomaly": {"score": 0.1}})
    assert f.evidence == {"ratio": 48.0}


def test_alert_id_stable_for_same_inputs() -> None:
    assert build().alert_id == build().alert_id
    assert build(finding("high", score=0.9)).alert_id == build().alert_id  # same trigger
    assert alert_id("account", "a", "t", "e1") == alert_id("account", "a", "t", "e1")


def test_alert_id_differs_for_other_trigger_or_subject() -> None:
    base = alert_id("account", "a", "volume_spike", "e1")
    assert alert_id("account", "a", "volume_spike", "e2") != base
    assert alert_id("account", "b", "volume_spike", "e1") != base
    assert alert_id("account", "a", "anomaly", "e1") != base
    assert alert_id("campaign", "a", "volume_spike", "e1") != base
    # the separator keeps field boundaries: no collision by shifting characters
    assert alert_id("account", "ab", "c", "e") != alert_id("account", "a", "bc", "e")
    assert build(finding(type_="anomaly")).alert_id != build().alert_id


def test_cooldown_suppresses_same_type_within_cooldown() -> None:
    state = AccountState()
    f = finding("medium")
    assert should_emit(state, f, 1000.0, cooldown_s=3600)
    start_cooldown(state, f, 1000.0)
    assert state.cooldowns["volume_spike"] == (1000.0, f.rank)
    assert not should_emit(state, f, 1000.0, 3600)
    assert not should_emit(state, f, 4599.9, 3600)
    assert should_emit(state, f, 4600.0, 3600)


def test_cooldown_is_per_type() -> None:
    state = AccountState()
    start_cooldown(state, finding("medium"), 1000.0)
    assert should_emit(state, finding("low", type_="anomaly"), 1001.0, 3600)


def test_escalation_breaks_the_cooldown_but_not_a_downgrade() -> None:
    state = AccountState()
    start_cooldown(state, finding("medium"), 1000.0)
    assert not should_emit(state, finding("low"), 1010.0, 3600)
    assert not should_emit(state, finding("medium"), 1010.0, 3600)
    assert should_emit(state, finding("high"), 1010.0, 3600)
    start_cooldown(state, finding("high"), 1010.0)
    assert not should_emit(state, finding("high"), 1020.0, 3600)
    assert not should_emit(state, finding("medium"), 1020.0, 3600)
    assert should_emit(state, finding("critical"), 1020.0, 3600)


def test_zero_cooldown_always_emits() -> None:
    state = AccountState()
    start_cooldown(state, finding(), 1000.0)
    assert should_emit(state, finding(), 1000.0, 0.0)


def test_cooldown_survives_serialisation() -> None:
    state = AccountState()
    start_cooldown(state, finding("high"), 1234.5)
    again = AccountState.from_bytes(state.to_bytes(), 0)
    assert again.cooldowns == {"volume_spike": (1234.5, 2)}
    assert not should_emit(again, finding("high"), 1300.0, 3600)
