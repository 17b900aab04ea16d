"""A new account ramping to many times the population's hourly rate.

Without the account's creation time (``account_created_ts`` is optional), its age is counted
from its first event here, and the finding is ``low``: an account first seen lately may be
years old (a detector started yesterday has seen every account for a day at most), and an
eval harness or a red team bursting looks exactly like this.
"""

from __future__ import annotations

from typing import Any

from river import stats

from detector.config import StateSettings, VolumeRuleSettings
from detector.detectors import Finding
from detector.state.account import HOUR_S, Snapshot


class PopulationBaseline:
    """Median requests per active account-hour, learned from completed account-hours.

    Until ``min_samples`` hours were seen, a configured prior stands in.

    >>> b = PopulationBaseline(min_samples=2, prior=10.0)
    >>> b.median
    10.0
    >>> for n in (4, 6, 8):
    ...     b.learn(n)
    >>> b.median
    6.0
    """

    def __init__(self, min_samples: int, prior: float) -> None:
        self.min_samples = min_samples
        self.prior = prior
        self.samples = 0
        self._median = stats.Quantile(0.5)

    def learn(self, requests_in_hour: int) -> None:
        self._median.update(requests_in_hour)
        self.samples += 1

    def export(self) -> tuple[int, stats.Quantile]:
        return self.samples, self._median

    def load(self, exported: tuple[int, stats.Quantile]) -> None:
        self.samples, self._median = exported

    @property
    def median(self) -> float:
        if self.samples < self.min_samples:
            return self.prior
        return max(1.0, float(self._median.get() or 0.0))


class VolumeRule:
    def __init__(
        self, settings: VolumeRuleSettings, state: StateSettings, baseline: PopulationBaseline
    ) -> None:
        self.settings = settings
        self.windows_s = state.windows_s
        self.baseline = baseline

    def evaluate(self, snap: Snapshot, context: dict[str, Any]) -> Finding | None:
        s = self.settings
        age = snap.account_age_s if snap.account_age_s is not None else snap.ts - snap.first_seen
        if age > s.new_account_max_age_s:
            return None
        last_hour = snap.in_window(self.windows_s, HOUR_S)
        if last_hour < s.min_requests_1h:
            return None
        median = self.baseline.median
        ratio = last_hour / median
        if ratio < s.ratio_medium:
            return None
        severity = "high" if ratio >= s.ratio_high else "medium"
        if snap.account_age_s is None:
            severity = "low"
        # 0.5 at the medium threshold, approaching 1 as the ratio grows.
        score = round(1.0 - 0.5 * s.ratio_medium / ratio, 4)
        age_text = f"{age / 3600:.1f} h" if age < 2 * 86400 else f"{age / 86400:.1f} days"
        return Finding(
            type="volume_spike",
            score=score,
            severity=severity,
            reasons=(
                f"{last_hour:.0f} requests in the last hour, {ratio:.0f}x the population median "
                f"of {median:.0f} per active account-hour",
                f"account {'created' if snap.account_age_s is not None else 'first seen'} "
                f"{age_text} before this request",
            ),
            evidence={
                "requests_1h": round(last_hour, 1),
                "population_median_1h": round(median, 2),
                "ratio": round(ratio, 2),
                "account_age_s": round(age, 1),
                "rate_per_hour_ewm": round(snap.rate_per_hour, 2),
                "baseline_samples": self.baseline.samples,
            },
        )

    def learn(self, snap: Snapshot, flagged: bool) -> None:
        # Completed hours of flagged accounts would drag the median up towards the abuse.
        if snap.completed_hour is not None and not flagged:
            self.baseline.learn(snap.completed_hour)
