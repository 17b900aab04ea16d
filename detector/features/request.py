"""Request-level features, computed once per event: identity, tokens, origin, text, intent, shape.

No I/O, no clock. Prompt text is read here and nowhere after: only its length,
fingerprint and tags travel on.
"""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

from detector.config import FeatureSettings
from detector.events import QueryEvent
from detector.features.intent import IntentTagger
from detector.features.text import normalise, simhash

ID_HASH_CHARS = 8  # 32-bit id hashes: a false match among 32 recent ids is ~1 in 100 million
AT_LIMIT_FRACTION = 0.95  # output within 5% of max_tokens counts as "ran to the limit"


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
    fingerprint: int = 0  # SimHash of the normalised prompt; 0 when there is no prompt
    tags: int = 0  # intent bits (detector.features.intent)
    single_turn: bool = True
    at_limit: bool = False
    stream: bool | None = None
    temperature: float | None = None
    system_hash: int = 0


def truncate_utf8(text: str | None, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    if not text:
        return ""
    if len(text) * 4 <= max_bytes:  # cheap early exit: cannot be longer than that
        return text
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def extract(event: QueryEvent, settings: FeatureSettings, tagger: IntentTagger) -> EventFeatures:
    """Features of one event.

    >>> from detector.events import QueryEvent
    >>> f = extract(QueryEvent("e1", 10.0, "a1", "m", prompt="héllo"), FeatureSettings(prompt_max_bytes=3),
    ...             IntentTagger({}))
    >>> (f.account_id, f.prompt_chars, len(f.id_hash))
    ('a1', 2, 8)
    """
    prompt = truncate_utf8(event.prompt, settings.prompt_max_bytes)
    system = truncate_utf8(event.system_prompt, settings.prompt_max_bytes)
    out = event.output_tokens or 0
    return EventFeatures(
        account_id=event.account_id,
        event_id=event.event_id,
        id_hash=xxhash.xxh64_hexdigest(event.event_id.encode("utf-8"))[:ID_HASH_CHARS],
        ts=float(event.ts),
        partition=event.partition,
        offset=event.offset,
        model=event.model,
        tokens_in=event.input_tokens or 0,
        tokens_out=out,
        prompt_chars=len(prompt),
        created_ts=event.account_created_ts,
        source_ip=event.source_ip or "",
        user_agent=event.user_agent or "",
        fingerprint=simhash(normalise(prompt)),
        tags=tagger.tag(prompt, event.tools or 0),
        single_turn=(event.n_messages or 1) <= 1,
        at_limit=bool(event.max_tokens) and out >= AT_LIMIT_FRACTION * (event.max_tokens or 0),
        stream=event.stream,
        temperature=event.temperature,
        system_hash=xxhash.xxh64_intdigest(system.encode("utf-8")) if system else 0,
    )
