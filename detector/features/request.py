"""Request-level features: identity, tokens, origin. No I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

from detector.events import QueryEvent

ID_HASH_CHARS = 12  # 48-bit id hashes: collisions among a few dozen recent ids are negligible


@dataclass(frozen=True, slots=True)
class EventFeatures:
    account_id: str
    event_id: str
    id_hash: str
    ts: float
    partition: int
    offset: int
    model: str
    tokens_in: int
    tokens_out: int
    prompt_chars: int
    created_ts: float | None
    source_ip: str
    user_agent: str


def truncate_utf8(text: str | None, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    if not text:
        return ""
    if len(text) * 4 <= max_bytes:  # cheap early exit: cannot be longer than that
        return text
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def extract(event: QueryEvent, prompt_max_bytes: int) -> EventFeatures:
    """Features of one event.

    >>> from detector.events import QueryEvent
    >>> f = extract(QueryEvent("e1", 10.0, "a1", "atlas-3", prompt="héllo"), 3)
    >>> (f.account_id, f.prompt_chars, len(f.id_hash))
    ('a1', 2, 12)
    """
    prompt = truncate_utf8(event.prompt, prompt_max_bytes)
    return EventFeatures(
        account_id=event.account_id,
        event_id=event.event_id,
        id_hash=xxhash.xxh64_hexdigest(event.event_id.encode("utf-8"))[:ID_HASH_CHARS],
        ts=float(event.ts),
        partition=event.partition,
        offset=event.offset,
        model=event.model,
        tokens_in=event.input_tokens or 0,
        tokens_out=event.output_tokens or 0,
        prompt_chars=len(prompt),
        created_ts=event.account_created_ts,
        source_ip=event.source_ip or "",
        user_agent=event.user_agent or "",
    )
