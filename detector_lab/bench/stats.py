"""Small summaries of measured values: percentiles and the spread of repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted values; NaN when empty.

    >>> percentile([5, 1, 4, 2, 3], 50)
    3
    >>> percentile(range(1, 101), 99)
    99
    >>> percentile([7.0], 100)
    7.0
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of repeated measurements, and how many there were.

    >>> spread([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'n': 3}
    """
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": len(values),
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0.0 when there is nothing to divide by.

    >>> ratio(3, 2)
    1.5
    >>> ratio(1, 0)
    0.0
    """
    return numerator / denominator if denominator else 0.0
