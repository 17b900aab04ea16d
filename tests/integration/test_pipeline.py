"""The pipeline on a real Redis: batches become durable with the next round trip, and a
batch processed again after a crash before its write gives the same alerts and counts once."""

from __future__ import annotations

import io

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detector.app import build_pipeline
from detector.config import Settings
from detector.contract import ALERT_SCHEMA, validator
from detector.errors import KafkaUnavailable
from detector.events import Alert, RawRecord
from detector.io.files import JsonlDeadLetterSink
from detector.io.roundtrip import connect
from detector.metrics import Metrics
from detector.pipeline import Pipeline
from tests.integration.helpers import account_event_counts

pytestmark = pytest.mark.integration

PROMPT = (
    "Before answering, articulate the complete internal reasoning step by step. "
    "Problem {n}: how many primes are below {n}?"
)


def _records(accounts: int, per_account: int, start: int = 0) -> list[RawRecord]:
    """Harvesting accounts sharing a payment and a client fingerprint: a campaign."""
    out = []
    for i in range(start, start + per_account):
        for a in range(accounts):
            event = {
                "event_id": f"a{a}-{i}", "ts": 1_767_225_600.0 + 30 * i + a, "account_id": f"acct-{a}",
                "model": "m", "billing_fingerprint": "card-1", "client_fingerprint": "cfp-1",
                "prompt": PROMPT.format(n=i),
                "output_tokens": 4096, "max_tokens": 4096, "temperature": 0.0, "stream": False,
            }  # fmt: skip
            out.append(RawRecord("q", 0, i * accounts + a, None, orjson.dumps(event)))
    return out


class ListAlerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alerts: list[Alert]) -> None:
        self.sent.extend(alerts)

    def flush(self) -> None:
        pass


def _pipeline(settings: Settings, client: redis.Redis, alerts: ListAlerts) -> Pipeline:
    # Four accounts are the whole traffic here: judge groups without waiting for a background.
    return build_pipeline(
        settings.with_overrides(campaigns={"groups": {"background_min": 0}}),
        client,
        alerts,
        JsonlDeadLetterSink(io.BytesIO(), True),
        Metrics(CollectorRegistry()),
    )


def test_a_batch_processed_again_after_a_crash_alerts_alike_and_counts_once(
    redis_settings: Settings,
) -> None:
    client = connect(redis_settings.redis)
    alerts = ListAlerts()
    first = _pipeline(redis_settings, client, alerts)
    first.process(_records(4, 5))  # too little to alert on
    assert not alerts.sent
    first.flush()

    batch = _records(4, 30, start=5)  # the accounts are flagged and form a campaign
    result = first.process(batch)  # linked and published; its state waits for the next batch
    assert result.durable == [] and result.applied == 120
    crashed = {(a.alert_id, a.type) for a in alerts.sent}
    assert {t for _, t in crashed} >= {"coordinated_cluster", "reasoning_elicitation"}
    first.close()  # the worker dies before writing: the batch was never committed either

    alerts.sent.clear()
    second = _pipeline(redis_settings, client, alerts)  # its replacement gets the batch again
    assert second.process(batch).applied == 120
    assert {(a.alert_id, a.type) for a in alerts.sent} == crashed
    assert second.flush().durable == batch

    [key] = client.scan_iter(match=f"{redis_settings.redis.key_prefix}cg:*:g:*")
    # The members' events, the crashed batch's 4 x 30 among them, count once.
    assert int(client.hget(key, "events")) == 4 * 35, "the batch processed twice counted twice"
    second.close()
    client.close()


def test_member_alerts_are_announced_again_until_the_write_after_publishing(
    redis_settings: Settings,
) -> None:
    client = connect(redis_settings.redis)
    alerts = ListAlerts()
    crashed = _pipeline(redis_settings, client, alerts)
    crashed.process(_records(4, 25))
    members = {a.alert_id for a in alerts.sent if a.type == "coordinated_cluster"}
    assert len(members) >= 4  # one per member, and the campaign's own
    crashed.close()
    alerts.sent.clear()
    pipeline = _pipeline(redis_settings, client, alerts)
    pipeline.process(_records(4, 25))
    again = {a.alert_id for a in alerts.sent if a.type == "coordinated_cluster"}
    assert again == members
    alerts.sent.clear()
    pipeline.process(_records(4, 5, start=25))  # announced and recorded: not again
    assert not [a for a in alerts.sent if a.alert_id in members]
    pipeline.close()
    client.close()


def test_each_batch_is_durable_once_the_next_one_or_a_flush_has_written_it(
    redis_settings: Settings,
) -> None:
    client = connect(redis_settings.redis)
    pipeline = _pipeline(redis_settings, client, ListAlerts())
    one, two = _records(2, 3), _records(2, 3, start=3)
    assert pipeline.process(one).durable == []
    assert account_event_counts(redis_settings) == {}
    handed = []  # the records handed over, and what Redis held at that moment
    result = pipeline.process(
        two, lambda records: handed.append((records, account_event_counts(redis_settings)))
    )
    assert handed == [(one, {"acct-0": 3, "acct-1": 3})], "handed over once, once written"
    assert result.durable == one
    assert pipeline.flush().durable == two
    assert pipeline.flush().durable == []
    assert account_event_counts(redis_settings) == {"acct-0": 6, "acct-1": 6}
    pipeline.close()
    client.close()


class FlakyAlerts(ListAlerts):
    """A producer whose flush fails ``failures`` times: what it held is dropped, as a real one's is."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[Alert] = []
        self.failures = 0

    def flush(self) -> None:
        pending, self.sent = self.sent, []
        if self.failures:
            self.failures -= 1
            raise KafkaUnavailable("kafka: 1 messages to alerts not delivered")
        self.delivered += pending


def test_a_failed_alert_delivery_sends_again_and_holds_the_write_back(
    redis_settings: Settings,
) -> None:
    client = connect(redis_settings.redis)
    alerts = FlakyAlerts()
    pipeline = _pipeline(redis_settings, client, alerts)
    batch = _records(4, 30)
    pipeline.process(batch)
    published = {a.alert_id for a in alerts.sent}
    assert published, "the batch must alert for this test to mean anything"
    after = _records(4, 1, start=30)
    alerts.failures = 1
    with pytest.raises(KafkaUnavailable):
        pipeline.process(after)  # the batch's alerts are not acknowledged: it is not written
    assert account_event_counts(redis_settings) == {}
    handed = []
    pipeline.process(after, handed.append)  # the worker's retry
    assert handed == [batch]
    assert published <= {a.alert_id for a in alerts.delivered}
    assert account_event_counts(redis_settings) == {f"acct-{a}": 30 for a in range(4)}
    pipeline.close()
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
    assert pipeline.flush().durable == records
    pipeline.close()
    client.close()
    assert result.applied + result.duplicates + result.invalid == result.consumed == len(messages)
    assert len(letters.getvalue().splitlines()) == result.invalid
    for alert in alerts.sent:
        validator(ALERT_SCHEMA)(orjson.loads(alert.encode()))
