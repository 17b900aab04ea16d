"""How much a shared value says, from how many accounts share it (its df).

A value held by thirty accounts is strong evidence that they belong together; one held by
thousands (a popular client, a large NAT, a cloud range) says almost nothing, and one held by
two is mostly chance. The weight ramps up over the first few holders, is flat up to a tenth
of the cap, then falls like an inverse document frequency to 0 at the cap, which combines a
count with a share of the active accounts, since the same count means different things in a
small deployment and a large one. Flat rather than rarest-first: a value three accounts
share by chance (an address in a proxy pool) must not outweigh one a whole campaign shares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from detector.campaigns.evidence import FAMILY


@dataclass(frozen=True)
class WeightRules:
    min_df: int = 3  # fewer holders than this: chance, weight 0
    ramp_df: int = 5  # the weight reaches its full size at this many holders
    cap: int = 20_000  # at or above this many holders a value weighs 0 ...
    cap_share: float = 0.5  # ... and at or above this share of the active accounts,
    cap_min: int = 50  # ... unless that share is fewer accounts than this (a small deployment)
    flat: float = 10.0  # values held by at most cap / flat accounts weigh fully, more by fewer
    kind_weight: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(FAMILY, 1.0))


def weight(kind: str, df: int, active: int, rules: WeightRules) -> float:
    """The weight of a value of ``kind`` held by ``df`` of ``active`` accounts.

    >>> r = WeightRules(cap=1000, cap_share=1.0, cap_min=50)
    >>> [round(weight("cfp", n, 10_000, r), 2) for n in (2, 3, 5, 30, 100, 300, 999)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.52, 0.0]
    >>> round(weight("cfp", 4, 4, r), 2)  # every account of a small deployment: still evidence
    0.75
    """
    cap = min(rules.cap, max(rules.cap_min, rules.cap_share * active))
    if df < rules.min_df or df >= cap:
        return 0.0
    ramp = min(1.0, (df - 1) / (rules.ramp_df - 1))
    return (
        rules.kind_weight.get(kind, 0.0)
        * ramp
        * min(1.0, math.log(cap / df) / math.log(rules.flat))
    )
