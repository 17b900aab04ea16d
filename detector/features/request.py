"""Request-level features, computed once per event: identity, tokens, origin, text, intent, shape.

No I/O, no clock. Prompt text is read here and nowhere after: only its length,
fingerprint and tags travel on.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

import msgspec
import xxhash

from detector.config import FeatureSettings
from detector.events import QueryEvent
from detector.features.intent import IntentTagger
from detector.features.text import normalise_lowered, simhashes

# An octet as ipaddress reads it: no leading 0.
_OCTET: Final = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = re.compile(r"\.".join([_OCTET] * 4))
# A template's fixed opening: honest prompts rarely share their first 8 words.
PREFIX_TOKENS: Final = 8
# Where a template's fixed opening ends, in characters: word counts mean nothing in Chinese.
OPENING_CHARS: Final = 40
_DIGIT_RUNS: Final = re.compile(r"[0-9]+")
AT_LIMIT_FRACTION: Final = 0.95  # output within 5% of max_tokens counts as "ran to the limit"


class EventFeatures(msgspec.Struct, frozen=True, gc=False):
    account_id: str
    event_id: str
    id_hash: int  # 32 bits: a false match among 32 recent ids is ~1 in 100 million
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
    # Cross-account evidence: values other accounts may share (see detector.campaigns).
    billing: str = ""
    client: str = ""
    network: str = ""  # /24 of IPv4, /48 of IPv6: linking evidence
    address_range: str = ""  # /16 of IPv4, /32 of IPv6: the origin a source alert names
    asn_agent: str = ""  # ASN together with the user agent
    prefix: int = 0  # hash of the prompt's first words: a template's fixed opening
    opening: int = 0  # hash of the prompt's first characters, in any script (detector.campaigns)
    habit: int = 0  # hash of the request's parameters: how a client or script sends requests


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
    >>> (f.account_id, f.prompt_chars, f.id_hash < 2**32)
    ('a1', 2, True)
    """
    return extract_batch([event], settings, tagger)[0]


def extract_batch(
    events: list[QueryEvent], settings: FeatureSettings, tagger: IntentTagger
) -> list[EventFeatures]:
    """Features of a batch of events; the prompt fingerprints are computed all at once."""
    prompts = [truncate_utf8(e.prompt, settings.prompt_max_bytes) for e in events]
    lowered = [p.lower() for p in prompts]  # once, for both the tokens and the intent tags
    tokens = [normalise_lowered(p) for p in lowered]
    # The learned tags, for the whole batch at once: OR-ed with each event's pattern tags.
    learned = tagger.model.tags(lowered) if tagger.model is not None else [0] * len(events)
    return [
        _features(e, p, low, t, fp, m, settings, tagger)
        for e, p, low, t, fp, m in zip(
            events, prompts, lowered, tokens, simhashes(tokens), learned, strict=True
        )
    ]


def _features(
    event: QueryEvent,
    prompt: str,
    lowered: str,
    tokens: list[bytes],
    fingerprint: int,
    learned: int,
    settings: FeatureSettings,
    tagger: IntentTagger,
) -> EventFeatures:
    system = truncate_utf8(event.system_prompt, settings.prompt_max_bytes)
    out = event.output_tokens or 0
    network, address_range = networks_of(event.source_ip)
    return EventFeatures(
        account_id=event.account_id,
        event_id=event.event_id,
        id_hash=xxhash.xxh32_intdigest(event.event_id.encode("utf-8")),
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
        fingerprint=fingerprint,
        tags=tagger.tag_lowered(lowered, event.tools or 0) | learned,
        single_turn=(event.n_messages or 1) <= 1,
        at_limit=bool(event.max_tokens) and out >= AT_LIMIT_FRACTION * (event.max_tokens or 0),
        stream=event.stream,
        temperature=event.temperature,
        system_hash=xxhash.xxh64_intdigest(system.encode("utf-8")) if system else 0,
        billing=event.billing_fingerprint or "",
        client=event.client_fingerprint or "",
        network=network,
        address_range=address_range,
        asn_agent=f"{event.asn}|{xxhash.xxh64_hexdigest((event.user_agent or '').encode())[:8]}"
        if event.asn is not None
        else "",
        prefix=xxhash.xxh64_intdigest(b" ".join(tokens[:PREFIX_TOKENS]))
        if len(tokens) >= 2 * PREFIX_TOKENS
        else 0,
        opening=opening_hash(lowered),
        habit=habit_hash(event),
    )


def opening_hash(lowered: str) -> int:
    """Hash of a lower-cased prompt's first ``OPENING_CHARS`` characters, whitespace collapsed
    and runs of ASCII digits masked, in any script; 0 for a prompt shorter than that.

    >>> opening_hash("переведи на русский 12 строк, пожалуйста: a") == opening_hash("переведи  на русский 7 строк, пожалуйста: b")
    True
    >>> opening_hash("short")
    0
    """
    head = _DIGIT_RUNS.sub("0", " ".join(lowered[: 2 * OPENING_CHARS].split()))[:OPENING_CHARS]
    if len(head) < OPENING_CHARS:
        return 0
    return xxhash.xxh64_intdigest(head.encode("utf-8"))


def habit_hash(event: QueryEvent) -> int:
    """Hash of the parameters a client sends the same way every time: temperature, max_tokens,
    streaming, whether it defines tools, and the conversation length (1, 2-3, 4+ messages)."""
    n = event.n_messages or 1
    turns = 1 if n <= 1 else 2 if n <= 3 else 4
    key = f"{event.temperature}|{event.max_tokens}|{event.stream}|{bool(event.tools)}|{turns}"
    return xxhash.xxh64_intdigest(key.encode())


@functools.lru_cache(maxsize=65536)  # addresses repeat, and ipaddress is slow to parse them
def networks_of(ip: str | None) -> tuple[str, str]:
    """The /24 of an IPv4 address or the /48 of an IPv6 one (linking evidence), and its /16 or
    /32 (the origin a source alert names), from one parse; empty if it is not an address.

    >>> networks_of("203.0.113.77"), networks_of("2001:db8:aa:bb::1"), networks_of("nonsense")
    (('203.0.113.0/24', '203.0.0.0/16'), ('2001:db8:aa::/48', '2001:db8::/32'), ('', ''))
    >>> networks_of("fe80::1%eth0")
    ('fe80::/48', 'fe80::/32')
    """
    if not ip:
        return "", ""
    # Most traffic is IPv4 and many addresses are new: one regex match is far cheaper than a parse.
    if quad := _IPV4.fullmatch(ip):
        a, b, c, _ = quad.groups()
        return f"{a}.{b}.{c}.0/24", f"{a}.{b}.0.0/16"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "", ""
    # From the integer, rather than formatting "address/prefix" and parsing it again.
    network = ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network
    narrow, wide = (24, 16) if address.version == 4 else (48, 32)
    return (
        str(network((int(address), narrow), strict=False)),
        str(network((int(address), wide), strict=False)),
    )
