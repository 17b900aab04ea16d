"""A shared river anomaly model over per-account features (HalfSpaceTrees)."""

from __future__ import annotations

import math
from typing import Any, Final

from river import anomaly

from detector.config import AnomalySettings, StateSettings
from detector.detectors import Finding
from detector.state.account import Snapshot

# Fixed feature set with fixed limits: HalfSpaceTrees splits only on the features of
# the first event it learns and wants them in known ranges (log1p scale here).
FEATURE_LIMITS: Final[dict[str, tuple[float, float]]] = {
    "log_req_short": (0.0, math.log1p(1_000)),  # shortest configured window
    "log_req_1h": (0.0, math.log1p(20_000)),
    "log_req_long": (0.0, math.log1p(200_000)),  # longest configured window
    "log_tokens_per_req": (0.0, math.log1p(50_000)),
    "log_distinct_ips": (0.0, math.log1p(1_000)),
    "log_distinct_user_agents": (0.0, math.log1p(100)),
    "log_age_days": (0.0, math.log1p(3_650)),
    # Behaviour shares (0..1) enter as they are.
    "dup": (0.0, 1.0),
    "harvest": (0.0, 1.0),
    "at_limit": (0.0, 1.0),
    "single_turn": (0.0, 1.0),
    "hour_flatness": (0.0, 1.0),
}
_SHARES: Final = ("dup", "harvest", "at_limit", "single_turn", "hour_flatness")


def account_features(snap: Snapshot, windows_s: tuple[int, ...]) -> dict[str, float]:
    """The model's input: bounded, log-scaled, always the same keys.

    >>> from detector.state.account import Distinct, Snapshot
    >>> snap = Snapshot("a", "e", 0.0, 1, 0.0, None, (1.0, 1.0, 1.0), (10.0, 10.0, 10.0),
    ...                 1.0, Distinct(1, 1, 1), None, False)
    >>> sorted(account_features(snap, (60, 3600, 86400))) == sorted(FEATURE_LIMITS)
    True
    """
    req_1h = snap.in_window(windows_s, 3600)
    tokens_1h = snap.tokens[windows_s.index(3600)]
    age = snap.account_age_s if snap.account_age_s is not None else snap.ts - snap.first_seen
    raw = {
        "log_req_short": snap.requests[0],
        "log_req_1h": req_1h,
        "log_req_long": snap.requests[-1],
        "log_tokens_per_req": tokens_1h / req_1h if req_1h >= 1 else 0.0,
        "log_distinct_ips": snap.distinct.ips,
        "log_distinct_user_agents": snap.distinct.user_agents,
        "log_age_days": age / 86400,
    }
    x = {k: min(math.log1p(max(0.0, v)), FEATURE_LIMITS[k][1]) for k, v in raw.items()}
    x.update({k: min(1.0, max(0.0, snap.behaviour.get(k, 0.0))) for k in _SHARES})
    return x


class AnomalyDetector:
    """Scores each snapshot, then learns from it unless it looks anomalous.

    The score and the features behind it go into ``context["anomaly"]``, so that the alerts
    raised at a scored snapshot carry them as evidence.
    """

    def __init__(self, settings: AnomalySettings, state: StateSettings) -> None:
        self.settings = settings
        self.windows_s = state.windows_s
        self.model = anomaly.HalfSpaceTrees(
            n_trees=settings.n_trees,
            height=settings.height,
            window_size=settings.window_size,
            limits=FEATURE_LIMITS,
            seed=settings.seed,
        )
        self.learned = 0
        self._last: tuple[dict[str, float], float] | None = None

    def evaluate(self, snap: Snapshot, context: dict[str, Any]) -> Finding | None:
        # Every Nth event of an account, counted in its own event count: the same snapshots
        # whatever the batches, so replays and restarts score alike.
        if snap.events % self.settings.every_events:
            return None
        x = account_features(snap, self.windows_s)
        score = float(self.model.score_one(x))
        self._last = (x, score)
        context["anomaly"] = {
            "score": score,
            "features": x,
            "model": "river.anomaly.HalfSpaceTrees",
            "learned_events": self.learned,
        }
        warmed_up = self.learned >= self.settings.window_size
        if not warmed_up or snap.events < self.settings.min_events:
            return None
        if score < self.settings.alert_score:
            return None
        top = sorted(
            ((k, v) for k, v in x.items() if k.startswith("log_")),
            key=lambda kv: kv[1],
            reverse=True,
        )[:3]
        return Finding(
            type="anomaly",
            score=round(score, 4),
            severity="low",
            reasons=(
                f"anomaly score {score:.2f} (alert at {self.settings.alert_score:.2f}) from a model "
                f"trained on {self.learned} account snapshots; largest features: "
                + ", ".join(f"{k}={math.expm1(v):.0f}" for k, v in top),
            ),
        )

    def learn(self, snap: Snapshot, flagged: bool) -> None:
        if self._last is None:
            return
        x, score = self._last
        self._last = None
        # Never learn from what looks anomalous or was flagged (river's protect_anomaly_detector).
        if not flagged and score < self.settings.learn_below_score:
            self.model.learn_one(x)
            self.learned += 1
