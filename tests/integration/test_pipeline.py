"""The pipeline on a real Redis: a batch processed again after a failed state write
(what a crash between linking and saving leaves) gives the same alerts and counts once."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detector.app import build_pipeline
from detector.config import Settings
from detector.contract import ALERT_SCHEMA, validator
from detector.errors import ServiceUnavailable
from detector.events import RawRecord
from detector.io.files import JsonlDeadLetterSink
from detector.metrics import Metrics
from detector.state.store import AccountStore, connect

pytestmark = pytest.mark.integration

PROMPT = (
    "Before answering, articulate the complete internal reasoning step by step. "
    "Problem {n}: how many primes are below {n}?"
)


def _records(accounts: int, per_account: int, start: int = 0) -> list[RawRecord]:
    """Harvesting accounts sharing one payment fingerprint: they form a campaign."""
    out = []
    for i in range(start, start + per_account):
        for a in range(accounts):
            event = {
                "event_id": f"a{a}-{i}", "ts": 1_767_225_600.0 + 30 * i + a, "account_id": f"acct-{a}",
                "model": "m", "billing_fingerprint": "card-1", "prompt": PROMPT.format(n=i),
                "output_tokens": 4096, "max_tokens": 4096, "temperature": 0.0, "stream": False,
            }  # fmt: skip
            out.append(RawRecord("q", 0, i * accounts + a, None, orjson.dumps(event)))
    return out


class ListAlerts:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, alerts: list[dict[str, Any]]) -> None:
        self.sent.extend(alerts)

    def flush(self) -> None:
        pass


class FailingSaves(AccountStore):
    """Refuses the next ``n`` state writes as if Redis went away right before them."""

    failures = 0

    def save(self, batch: Any, extra: list[tuple[Any, ...]] | None = None) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise ServiceUnavailable("redis: connection lost before the state write")
        return super().save(batch, extra)


def _pipeline(settings: Settings, client: redis.Redis, alerts: ListAlerts):
    metrics = Metrics(CollectorRegistry())
    pipeline = build_pipeline(
        settings, client, alerts, JsonlDeadLetterSink(io.BytesIO(), True), metrics
    )
    binary = connect(settings.redis, binary=True)
    pipeline.store = FailingSaves(binary, settings.redis, settings.state, metrics)
    return pipeline


def test_batch_processed_again_after_a_failed_write_alerts_alike_and_counts_once(
    redis_settings: Settings,
) -> None:
    client = connect(redis_settings.redis)
    alerts = ListAlerts()
    pipeline = _pipeline(redis_settings, client, alerts)
    pipeline.process(_records(4, 5))  # too little to alert on
    assert not alerts.sent

    batch = _records(4, 30, start=5)  # the accounts are flagged and form a campaign
    pipeline.store.failures = 1
    with pytest.raises(ServiceUnavailable):
        pipeline.process(batch)  # linked and published, state not written
    first_attempt = {(a["alert_id"], a["type"]) for a in alerts.sent}
    assert {t for _, t in first_attempt} >= {"coordinated_cluster", "reasoning_elicitation"}
    alerts.sent.clear()
    pipeline.process(batch)  # the worker's retry of the same records
    assert {(a["alert_id"], a["type"]) for a in alerts.sent} == first_attempt

    record = f"{redis_settings.redis.key_prefix}cmp:{{c}}:c:"
    [key] = [k for k in client.scan_iter(match=record + "*") if not k.endswith(":p")]
    # Members joined in the failed batch: its 4 x 30 events count, once.
    assert int(client.hget(key, "events")) == 4 * 30, "the retried batch was counted twice"
    client.close()


def test_member_alerts_are_announced_again_until_the_write_after_publishing(
    redis_settings: Settings,
) -> None:
    client = connect(redis_settings.redis)
    alerts = ListAlerts()
    pipeline = _pipeline(redis_settings, client, alerts)
    pipeline.store.failures = 1
    with pytest.raises(ServiceUnavailable):
        pipeline.process(_records(4, 25))
    members = {a["alert_id"] for a in alerts.sent if a["type"] == "coordinated_cluster"}
    assert len(members) >= 4  # one per member, and the campaign's own
    alerts.sent.clear()
    pipeline.process(_records(4, 25))
    again = {a["alert_id"] for a in alerts.sent if a["type"] == "coordinated_cluster"}
    assert again == members
    alerts.sent.clear()
    pipeline.process(_records(4, 5, start=25))  # announced and recorded: not again
    assert not [a for a in alerts.sent if a["alert_id"] in members]
    client.close()


_text = st.text(min_size=0, max_size=40)
_valid = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=20),
        "ts": st.floats(min_value=0, max_value=2e9, allow_nan=False),
        "account_id": st.sampled_from(["a", "b", "c\u0000", "d" * 128]),
        "model": st.text(min_size=1, max_size=10),
    },
    optional={
        "prompt": st.text(max_size=2000),
        "source_ip": st.sampled_from(["10.0.0.1", "::1", "not an ip", ""]),
        "asn": st.integers(min_value=0, max_value=2**64 - 1),
        "input_tokens": st.integers(min_value=0, max_value=2**63 - 1),
        "output_tokens": st.integers(min_value=0, max_value=10**6),
        "max_tokens": st.integers(min_value=0, max_value=10**6),
        "temperature": st.floats(min_value=0, max_value=1e308, allow_nan=False),
        "n_messages": st.integers(min_value=0, max_value=10**9),
        "stream": st.booleans(),
        "user_agent": _text,
        "billing_fingerprint": _text,
        "client_fingerprint": _text,
        "account_created_ts": st.floats(min_value=0, max_value=2e9, allow_nan=False),
    },
).map(orjson.dumps)
_message = st.one_of(_valid, st.binary(max_size=200), _valid.map(lambda v: v[: len(v) // 2]))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_message, max_size=40))
def test_any_messages_are_accounted_for_and_never_stop_the_pipeline(
    redis_settings: Settings, messages: list[bytes]
) -> None:
    client = connect(redis_settings.redis)
    alerts = ListAlerts()
    letters = io.BytesIO()
    pipeline = build_pipeline(
        redis_settings,
        client,
        alerts,
        JsonlDeadLetterSink(letters, True),
        Metrics(CollectorRegistry()),
    )
    records = [RawRecord("q", 0, i, None, m) for i, m in enumerate(messages)]
    result = pipeline.process(records)
    client.close()
    assert result.applied + result.duplicates + result.invalid == result.consumed == len(messages)
    assert len(letters.getvalue().splitlines()) == result.invalid
    for alert in alerts.sent:
        validator(ALERT_SCHEMA)(alert)
