"""Message types that flow through the pipeline: raw records, decoded events, dead letters, alerts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One message as a source delivered it (Kafka record or file line)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    line: int | None = None  # 1-based line number when the record came from a file


class QueryEvent(msgspec.Struct, frozen=True, gc=False):
    """One request to the inference API (contract ``query_event.v1``).

    ``prompt`` and ``system_prompt`` live in memory only: no code path stores,
    logs or forwards them. (A msgspec struct: built in C, ~20x faster than a frozen
    dataclass of this many fields, which matters once per event.)
    """

    event_id: str
    ts: float
    account_id: str
    model: str
    partition: int = 0
    offset: int = 0
    org_id: str | None = None
    api_key_id: str | None = None
    account_created_ts: float | None = None
    billing_fingerprint: str | None = None
    source_ip: str | None = None
    asn: int | None = None
    country: str | None = None
    user_agent: str | None = None
    client_fingerprint: str | None = None
    prompt: str | None = None
    system_prompt: str | None = None
    n_messages: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    tools: int | None = None
    stream: bool | None = None
    status: str | None = None
    latency_ms: float | None = None

    def __repr__(self) -> str:  # never print prompt text by accident
        return (
            f"QueryEvent(event_id={self.event_id!r}, account_id={self.account_id!r}, ts={self.ts})"
        )


CONTRACT_FIELDS: frozenset[str] = frozenset(QueryEvent.__struct_fields__) - {"partition", "offset"}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not become a ``QueryEvent``, with why and where it came from."""

    reason: str
    detail: str
    record: RawRecord
    error: str | None = None  # the exception's class, when an unforeseen one refused it


class Alert(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One finding of the detector (contract ``alert.v1``), as the sinks publish it.

    Fields are in the order they are published; one the contract leaves optional is not
    published when ``None``. ``evidence`` is free-form in the contract, so it stays a dict.
    Built by ``detector.alerting`` only; ``encode`` gives the message's bytes.

    No field has a default: mypyc, which compiles this module, drops a class statement's
    keywords (``kw_only``, ``omit_defaults``, even ``frozen``), and without ``kw_only`` a
    required field cannot follow one with a default. So ``encode`` leaves out ``None`` itself.
    """

    alert_id: str
    ts: float
    emitted_at: float
    subject_type: str  # account, campaign or source
    subject_id: str
    type: str
    severity: str  # low, medium, high or critical
    score: float
    accounts: list[str] | None  # campaign and source alerts
    account_count: int | None  # campaign and source alerts
    campaign_id: str | None  # the account alert of a campaign member
    reasons: list[str]
    evidence: dict[str, Any] | None
    first_seen_ts: float | None
    event_count: int | None
    detector_version: str

    def encode(self) -> bytes:
        """The JSON message. orjson, not msgspec's encoder, writes it: the bytes stay those
        published before alerts were typed (msgspec writes ``1e16`` where orjson writes ``1e+16``).

        >>> Alert(alert_id="x", ts=1.5, emitted_at=2.0, subject_type="account", subject_id="a",
        ...       type="anomaly", severity="low", score=0.25, accounts=None, account_count=None,
        ...       campaign_id=None, reasons=["r"], evidence=None, first_seen_ts=None,
        ...       event_count=None, detector_version="1").encode()
        b'{"alert_id":"x","ts":1.5,"emitted_at":2.0,"subject_type":"account","subject_id":"a","type":"anomaly","severity":"low","score":0.25,"reasons":["r"],"detector_version":"1"}'
        """
        fields = msgspec.to_builtins(self)
        return orjson.dumps({k: v for k, v in fields.items() if v is not None})
