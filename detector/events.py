"""Message types that flow through the pipeline: raw records, decoded events, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec


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
