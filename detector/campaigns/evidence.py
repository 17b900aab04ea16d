"""What an account shares with other accounts: values by kind, each kind in one family.

Independence is counted by family, never by kind: an address range and an ASN with its user
agent both say "the same network egress" (a reseller's, a NAT's), so they are one family.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

from detector.features import EventFeatures

Value = tuple[str, str]  # (kind, value): "cfp", "cfp-1a2b..."

FAMILY: Final[Mapping[str, str]] = {
    "net": "network",  # IPv4 /24, IPv6 /48
    "asnua": "network",  # ASN with the user agent
    "cfp": "client",  # client fingerprint
    "habit": "client",  # request parameters sent the same way every time
    "bill": "payment",  # billing fingerprint
    "sys": "content",  # system prompt
    "open": "content",  # the prompt's first characters, any script
    "tpl": "content",  # the prompt's first words, slots masked
    "lock": "timing",  # MinHash band of the account's active 10-second buckets (lockstep)
    "born": "lifecycle",  # account creation hour
    "young": "lifecycle",  # a source (ASN with user agent) used by an account under a day old
    "bhv": "lifecycle",  # how the account behaves, when unusual: age, output run to the limit, intent
}
KIND_NAMES: Final[Mapping[str, str]] = {
    "net": "address range",
    "asnua": "ASN and user agent",
    "cfp": "client fingerprint",
    "habit": "request habit",
    "bill": "billing fingerprint",
    "sys": "system prompt",
    "open": "prompt opening",
    "tpl": "prompt template",
    "lock": "lockstep timing",
    "born": "account creation hour",
    "young": "new accounts on one ASN and user agent",
    "bhv": "behaviour",
}
# Values of a kind an account's summary keeps (its most frequent ones): an account rotating
# through many addresses shares each of them only by chance.
KEPT: Final[Mapping[str, int]] = {
    "bill": 2,
    "cfp": 2,
    "net": 3,
    "asnua": 2,
    "habit": 1,
    "sys": 1,
    "open": 3,
    "tpl": 3,
    "lock": 2,
    "born": 1,
    "young": 2,
    "bhv": 1,
}
MIN_SHARE: Final = 0.2  # ... and only values on at least this share of its events
HELD: Final = 24  # values an account's state keeps counts for (the least counted make room)
# Replaced accounts are new: a new account on a source is rarer evidence than the source.
YOUNG_S: Final = 86400.0


def event_values(f: EventFeatures) -> tuple[Value, ...]:
    """The shareable values of one event.

    >>> f = EventFeatures("a", "e", 0, 0.0, 0, 0, "m", 0, 0, 0, 7300.0, "", "", client="c1", habit=5)
    >>> event_values(f)
    (('cfp', 'c1'), ('habit', '5'), ('born', '2'))
    """
    pairs = (
        ("bill", f.billing),
        ("cfp", f.client),
        ("net", f.network),
        ("asnua", f.asn_agent),
        ("habit", f"{f.habit:x}" if f.habit else ""),
        ("sys", f"{f.system_hash:x}" if f.system_hash else ""),
        ("open", f"{f.opening:x}" if f.opening else ""),
        ("tpl", f"{f.prefix:x}" if f.prefix else ""),
        ("born", f"{int(f.created_ts // 3600)}" if f.created_ts else ""),
        (
            "young",
            f.asn_agent
            if f.created_ts is not None and f.asn_agent and f.ts - f.created_ts < YOUNG_S
            else "",
        ),
    )
    return tuple((kind, value) for kind, value in pairs if value)


def tally(feats: Iterable[EventFeatures], into: Counter[Value] | None = None) -> Counter[Value]:
    """How many of the events carry each value (added to ``into``)."""
    counts: Counter[Value] = Counter() if into is None else into
    for f in feats:
        counts.update(event_values(f))
    return counts


def fold(held: dict[str, int], feats: Iterable[EventFeatures], limit: int = HELD) -> None:
    """Count the events' values into an account's stored tally (``"kind:value"`` -> events),
    in place, keeping at most ``limit``: a new value replaces the least counted one.

    >>> held = {"net:a": 3}
    >>> fold(held, [EventFeatures("a", "e", 0, 0.0, 0, 0, "m", 0, 0, 0, None, "", "", network="b")], 1)
    >>> held
    {'net:b': 1}
    """
    # An account's events mostly carry the same values: each set is made once per call.
    keys: dict[tuple[object, ...], list[str]] = {}
    for f in feats:
        young = f.created_ts is not None and f.ts - f.created_ts < YOUNG_S
        same = (f.billing, f.client, f.network, f.asn_agent, f.habit, f.system_hash, f.opening,
                f.prefix, f.created_ts, young)  # fmt: skip
        values = keys.get(same)
        if values is None:
            values = keys[same] = [f"{kind}:{value}" for kind, value in event_values(f)]
        for key in values:
            if key in held:
                held[key] += 1
                continue
            if len(held) >= limit:
                del held[min(held, key=held.__getitem__)]
            held[key] = 1


def parse(held: Mapping[str, int]) -> dict[Value, int]:
    """A stored tally as values and counts."""
    out: dict[Value, int] = {}
    for key, n in held.items():
        kind, _, value = key.partition(":")
        out[(kind, value)] = n
    return out


def summary(counts: Mapping[Value, int], events: int) -> frozenset[Value]:
    """An account's evidence: per kind its ``KEPT`` most frequent values, each on at least
    ``MIN_SHARE`` of its events (ties by value, so the same counts give the same summary).

    >>> summary({("net", "a"): 5, ("net", "b"): 1, ("cfp", "c"): 6}, 6) == {("net", "a"), ("cfp", "c")}
    True
    """
    floor = MIN_SHARE * events
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    taken: Counter[str] = Counter()
    kept = []
    for value, count in ranked:
        kind = value[0]
        if count >= floor and taken[kind] < KEPT.get(kind, 0):
            taken[kind] += 1
            kept.append(value)
    return frozenset(kept)


AGE_CLASSES: Final = (
    (86400.0, "1d"),
    (7 * 86400.0, "7d"),
    (30 * 86400.0, "30d"),
    (90 * 86400.0, "90d"),
)
HIGH_SHARE: Final = 0.3


def behaviour_value(age_s: float | None, at_limit: float, harvest: float) -> Value | None:
    """The account's behaviour bucket (age class at its first request, whether its output runs
    to max_tokens, whether it harvests), or None for the usual one (old, neither): accounts
    on one source that behave alike in an unusual way share a value honest ones lack.

    >>> behaviour_value(3600.0, 0.6, 0.0), behaviour_value(4e7, 0.0, 0.1)
    (('bhv', '1d|limit|-'), None)
    """
    age = next((name for limit, name in AGE_CLASSES if age_s is not None and age_s < limit), "")
    limit = "limit" if at_limit >= HIGH_SHARE else "-"
    intent = "intent" if harvest >= HIGH_SHARE else "-"
    if not age and limit == intent == "-":
        return None
    return ("bhv", f"{age or 'old'}|{limit}|{intent}")
