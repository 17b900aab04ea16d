"""An account's behaviour profile: what its recent requests look like, in a few hundred bytes.

``Profile`` is the stored form: running means, templates, hour counts, a MinHash of active
moments. ``add_event`` folds an event into it; ``behaviour_of`` derives the numbers the
detectors read (shares, ratios, template counts).

Shares are exponentially weighted over the last ``horizon`` events (an exact mean
while fewer were seen); templates are the account's recent prompt fingerprints,
each with how often a near-duplicate followed.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Final

import xxhash

from detector.features.intent import BIT, HARVEST_MASK, HARVEST_TAGS, TAGS
from detector.features.request import EventFeatures

SHARES: Final = (
    "dup",
    *TAGS,
    "harvest",
    "at_limit",
    "single_turn",
    "stream_off",
    "fixed_temperature",
    "system_reuse",
)
# The gap pair last: a first event has no gap.
MEANS: Final = ("log_out_in", "log_out", "log_gap", "log_gap_sq")
_FIELDS: Final = SHARES + MEANS
INDEX: Final = {name: i for i, name in enumerate(_FIELDS)}  # position of each mean in Profile.means
_MEANS_FORMAT: Final = f"<{len(_FIELDS)}d"
_TEMPLATE: Final = struct.Struct("<QI")  # fingerprint, near-duplicates seen
_COUNT_MAX: Final = 2**32 - 1
HOURS: Final = 24
TICK_BUCKET_S: Final = 10  # lockstep resolution: requests of one scheduler tick land in one bucket
TICK_HASHES: Final = 8
TICK_EMPTY: Final = 2**32 - 1  # above every xxh32 minimum but one, and fits the packed u32
HOUR_CAP: Final = 4000  # halve the hour-of-day counts past this, keeping the shape and the size
# The tag shares of an event, in TAGS order, then "harvest", for each value of its tag bits.
_TAG_SHARES: Final = tuple(
    (*(1.0 if tags & BIT[t] else 0.0 for t in TAGS), 1.0 if tags & HARVEST_MASK else 0.0)
    for tags in range(1 << len(TAGS))
)
_TAG_MASK: Final = (1 << len(TAGS)) - 1
# h * log(h) for every count an hour can hold (the cap halves them past HOUR_CAP in all).
_XLOGX: Final = [0.0] + [h * math.log(h) for h in range(1, HOUR_CAP + 2)]


@dataclass(slots=True)
class Profile:
    """What an account's recent requests look like, as stored in its value."""

    means: list[float] = field(default_factory=lambda: [0.0] * len(_FIELDS))  # _FIELDS order
    templates: list[list[int]] = field(default_factory=list)  # [fingerprint, near-duplicates seen]
    chain: int = 0
    chain_max: int = 0
    templates_seen: int = 0
    last_temperature: float = -1.0
    last_system: int = 0
    hours: list[int] = field(default_factory=lambda: [0] * HOURS)
    # MinHash of the account's active time buckets: accounts driven by one scheduler
    # (lockstep) end up with the same minima, honest accounts almost never do.
    ticks: list[int] = field(default_factory=lambda: [TICK_EMPTY] * TICK_HASHES)
    # The last bucket folded into ``ticks`` (not stored): folding it again changes nothing.
    last_tick: int = field(default=-1, compare=False, repr=False)

    # Exact float64s: a value rounded at each write would drift with the batch boundaries.
    def to_list(self) -> list[object]:
        """The profile as msgpack-ready values (packed into the account's stored value)."""
        return [
            struct.pack(_MEANS_FORMAT, *self.means),
            b"".join(_TEMPLATE.pack(fp, min(n, _COUNT_MAX)) for fp, n in self.templates),
            self.chain,
            self.chain_max,
            self.templates_seen,
            self.last_temperature,
            self.last_system,
            self.hours,
            struct.pack(f"<{TICK_HASHES}I", *self.ticks),
        ]

    @classmethod
    def from_list(cls, values: list[object]) -> Profile:
        means, templates, chain, chain_max, seen, temperature, system, hours, ticks = values
        return cls(
            means=list(struct.unpack(_MEANS_FORMAT, means)),  # type: ignore[arg-type]
            templates=[list(t) for t in _TEMPLATE.iter_unpack(templates)],  # type: ignore[arg-type]
            chain=chain,  # type: ignore[arg-type]
            chain_max=chain_max,  # type: ignore[arg-type]
            templates_seen=seen,  # type: ignore[arg-type]
            last_temperature=temperature,  # type: ignore[arg-type]
            last_system=system,  # type: ignore[arg-type]
            hours=list(hours),  # type: ignore[call-overload]
            ticks=list(struct.unpack(f"<{TICK_HASHES}I", ticks)),  # type: ignore[arg-type]
        )


def add_event(
    profile: Profile,
    feat: EventFeatures,
    events: int,
    gap_s: float | None,
    horizon: int,
    near_bits: int,
    max_templates: int,
) -> None:
    """Fold one (already deduplicated) event into the profile, in place."""
    dup = _match_template(profile, feat.fingerprint, near_bits, max_templates)
    profile.chain = profile.chain + 1 if dup else 0
    profile.chain_max = max(profile.chain_max, profile.chain)

    temperature = -1.0 if feat.temperature is None else feat.temperature
    # In _FIELDS order; without a gap the last two means are left as they are. A list filled
    # in place and an indexed loop: the cheapest form once compiled.
    values = [1.0 if dup else 0.0]
    values.extend(_TAG_SHARES[feat.tags & _TAG_MASK])
    values += (
        1.0 if feat.at_limit else 0.0,
        1.0 if feat.single_turn else 0.0,
        0.0 if feat.stream is True else 1.0,
        1.0 if events > 1 and temperature == profile.last_temperature else 0.0,
        1.0 if feat.system_hash != 0 and feat.system_hash == profile.last_system else 0.0,
        math.log((feat.tokens_out + 1) / (feat.tokens_in + 1)),
        math.log(feat.tokens_out + 1),
    )
    if gap_s is not None:
        log_gap = math.log1p(max(0.0, gap_s))
        values.append(log_gap)
        values.append(log_gap**2)
    weight = max(1.0 / horizon, 1.0 / events)  # exact mean until ``horizon`` events
    means = profile.means
    for i, v in enumerate(values):
        m = means[i]
        means[i] = m + weight * (v - m)
    profile.last_temperature = temperature
    profile.last_system = feat.system_hash

    hours = profile.hours
    hours[int(feat.ts // 3600) % HOURS] += 1
    if sum(hours) > HOUR_CAP:
        profile.hours = [h // 2 for h in hours]
    tick = int(feat.ts // TICK_BUCKET_S)
    if tick != profile.last_tick:
        bucket = tick.to_bytes(8, "little", signed=True)
        ticks = profile.ticks
        for i in range(TICK_HASHES):
            h = xxhash.xxh32_intdigest(bucket, seed=i)
            if h < ticks[i]:
                ticks[i] = h
        profile.last_tick = tick


def _match_template(profile: Profile, fingerprint: int, near_bits: int, max_templates: int) -> bool:
    """True if the prompt is a near-duplicate of a recent one; keeps the most used templates."""
    if fingerprint == 0:
        return False
    for entry in profile.templates:
        if (entry[0] ^ fingerprint).bit_count() <= near_bits:  # hamming(), inlined: per template
            entry[1] += 1
            return True
    profile.templates_seen += 1
    if len(profile.templates) >= max_templates:
        # Evict the least followed template, but let a new one prove itself.
        profile.templates.remove(min(profile.templates, key=lambda e: e[1]))
    profile.templates.append([fingerprint, 0])
    return False


def focus(profile: Profile, min_share: float = 0.2) -> str:
    """The harvested capability the account's recent prompts target most, if any does notably.

    >>> p = Profile()
    >>> p.means[INDEX["rubric"]], p.means[INDEX["reasoning"]] = 0.7, 0.3
    >>> focus(p)
    'rubric'
    """
    share, tag = max((profile.means[INDEX[t]], t) for t in HARVEST_TAGS)
    return tag if share >= min_share else ""


def lockstep_bands(profile: Profile, bands: int = 2) -> tuple[str, ...]:
    """Band signatures of the time-bucket MinHash: equal bands mean mostly the same active moments.

    Two bands of four minima: accounts of one scheduler share a band most of the time,
    unrelated accounts essentially never, so one account does not bridge two campaigns by chance.

    >>> p = Profile(ticks=[1, 2, 3, 4, 5, 6, 7, 8])
    >>> lockstep_bands(p)
    ('0:1-2-3-4', '1:5-6-7-8')
    """
    per = len(profile.ticks) // bands
    return tuple(
        f"{b}:" + "-".join(f"{t:x}" for t in profile.ticks[b * per : (b + 1) * per])
        for b in range(bands)
    )


def flatness(hours: list[int]) -> float:
    """Normalised entropy of the hour-of-day counts: 1 round the clock, near 0 in a few hours.

    >>> flatness([1] * 24)
    1.0
    >>> flatness([5] + [0] * 23)
    0.0
    """
    # -sum(p log p) with p = h / total, from a table of h log h: this runs for every event.
    # A plain loop: compiled, it indexes the lists directly.
    total = 0
    xlogx = 0.0
    for h in hours:
        if h >= len(_XLOGX):  # a count past the cap (not written by this version)
            return _flatness_exact(hours)
        total += h
        xlogx += _XLOGX[h]
    if total == 0:
        return 0.0
    entropy = math.log(total) - xlogx / total
    return min(1.0, max(0.0, entropy / math.log(HOURS)))


def _flatness_exact(hours: list[int]) -> float:
    total = sum(hours)
    entropy = -sum(h / total * math.log(h / total) for h in hours if h)
    return min(1.0, max(0.0, entropy / math.log(HOURS)))


def behaviour_of(profile: Profile) -> dict[str, float]:
    """What the profile says of the account's recent requests, as the detectors read it
    (``Snapshot.behaviour``): the shares, the output/input ratio, the spread of the gaps,
    hour flatness and template counts."""
    m = profile.means
    log_out_in, _, log_gap, log_gap_sq = m[len(SHARES) :]
    gap_var = max(0.0, log_gap_sq - log_gap**2)
    # Item by item: the cheapest form once compiled.
    values = {name: m[i] for i, name in enumerate(SHARES)}  # the shares lead the means
    values["out_in_ratio"] = math.exp(log_out_in)
    values["gap_log_std"] = math.sqrt(gap_var)
    values["hour_flatness"] = flatness(profile.hours)
    values["template_chain"] = float(profile.chain)
    values["template_chain_max"] = float(profile.chain_max)
    values["templates_seen"] = float(profile.templates_seen)
    values["top_template_share"] = _top_template_share(profile)
    return values


def _top_template_share(profile: Profile) -> float:
    """Share of the most followed template among the remembered ones (each counts itself)."""
    if not profile.templates:
        return 0.0
    most = total = 0
    for template in profile.templates:  # a loop, not three passes over a new list
        n = template[1]
        total += n
        most = max(most, n)
    return (most + 1) / (total + len(profile.templates))
