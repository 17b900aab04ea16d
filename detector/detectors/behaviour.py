"""What a distillation account does differently, from its own requests: templates, intent, shape.

Three findings, each gated by its own evidence and scored from 0 to 1:

- ``reasoning_elicitation``: many prompts ask for the model's internal reasoning itself;
- ``capability_harvest``: prompts concentrate on harvestable capabilities (reasoning,
  rubric grading, safe rewrites, agentic coding, tool use) and the requests are shaped
  for harvesting (outputs run to the limit, single turn, fixed sampling, no streaming);
- ``template_chain``: long chains of near-identical prompts. On its own (an enterprise
  batch job looks like this) it is informational; with harvesting intent it is medium.

Reasons compare each number with the population median over active account-hours.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from river import stats

from detector.config import BehaviourSettings
from detector.detectors import SEVERITIES, Finding, Reasons
from detector.features.intent import HARVEST_NAMES, HARVEST_TAGS
from detector.state.account import Snapshot

BASELINE_KEYS = ("dup", "harvest", "reasoning", "at_limit", "single_turn", "top_template_share")
Medians = dict[str, float | None]  # population median per BASELINE_KEYS, None until learned


class FeatureBaselines:
    """Population medians of behaviour features, one sample per active account-hour."""

    def __init__(self, min_samples: int) -> None:
        self.min_samples = min_samples
        self.samples = 0
        self._medians = {k: stats.Quantile(0.5) for k in BASELINE_KEYS}
        self._current: dict[str, float | None] | None = None  # read per snapshot, changed hourly

    def learn(self, profile: dict[str, float]) -> None:
        for key, quantile in self._medians.items():
            quantile.update(profile.get(key, 0.0))
        self.samples += 1
        self._current = None

    def medians(self) -> dict[str, float | None]:
        if self._current is None:
            ready = self.samples >= self.min_samples
            self._current = {
                k: float(q.get() or 0.0) if ready else None for k, q in self._medians.items()
            }
        return self._current

    def median(self, key: str) -> float | None:
        return self.medians()[key]

    def export(self) -> tuple[int, dict[str, stats.Quantile]]:
        return self.samples, self._medians

    def load(self, exported: tuple[int, dict[str, stats.Quantile]]) -> None:
        self.samples, self._medians = exported
        self._current = None


def round4(x: float) -> float:
    """``round(x, 4)``, for the scores computed at every event, at a fraction of its cost:
    ``round`` with digits goes through a decimal conversion of ``x``, needed only near a half.

    >>> round4(0.123456), round4(0.03125), round4(1.0)
    (0.1235, 0.0312, 1.0)
    """
    scaled = x * 10_000.0
    nearest = round(scaled)
    # Shares are often multiples of 1/32, whose scores land on halves: there the product's
    # own rounding error would decide, so ``round`` decides from x itself.
    if abs(abs(scaled - nearest) - 0.5) < 1e-6:
        return round(x, 4)
    return nearest / 10_000.0


def harvest_shape(profile: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted share of harvesting-shaped requests, 0..1.

    >>> harvest_shape({"at_limit": 1.0, "single_turn": 1.0, "stream_off": 0.0, "fixed_temperature": 0.0},
    ...               {"at_limit": 0.5, "single_turn": 0.5, "stream_off": 0.0, "fixed_temperature": 0.0})
    1.0
    """
    return round4(sum(profile.get(k, 0.0) * w for k, w in weights.items()))


class BehaviourDetector:
    def __init__(self, settings: BehaviourSettings, baselines: FeatureBaselines) -> None:
        self.settings = settings
        self.baselines = baselines

    def evaluate(self, snap: Snapshot, context: dict[str, Any]) -> Finding | None:
        # The suite takes one finding per detector; the strongest of the three is reported,
        # the others' numbers are in its evidence. This runs for every event: the three are
        # scored inline, and only the chosen one gets its evidence, and its reasons when an
        # alert reads them (most findings are in cooldown).
        s = self.settings
        if snap.events < s.min_events or not snap.profile:
            return None
        p = snap.profile
        shape = harvest_shape(p, s.shape_weights)
        context["behaviour"] = {"harvest_shape": shape, "harvest": p["harvest"], "dup": p["dup"]}
        best: tuple[int, float, str] | None = None  # (severity rank, score, type)
        manner = (1 - s.repetition_weight) * shape + s.repetition_weight * p["dup"]
        if p["reasoning"] >= s.reasoning_share:
            # Asking for the internal reasoning is itself strong: half the score without any shape.
            score = round4(min(1.0, p["reasoning"] / 0.8) * (0.5 + 0.5 * manner))
            best = (self._rank(score), score, "reasoning_elicitation")
        if p["harvest"] >= s.harvest_share:
            # Honest products use these capabilities too: it takes the intent *and* the manner.
            score = round4(p["harvest"] * manner)
            candidate = (self._rank(score), score, "capability_harvest")
            best = candidate if best is None or candidate[:2] > best[:2] else best
        if p["dup"] >= s.template_share and p["template_chain_max"] >= s.template_chain:
            score = round4(0.5 * p["dup"] + 0.5 * min(1.0, p["template_chain_max"] / 50))
            # A template without harvesting intent is what batch jobs do: tell, do not flag.
            rank = self._rank(score) if p["harvest"] >= s.harvest_share / 2 else 0
            candidate = (rank, score, "template_chain")
            best = candidate if best is None or candidate[:2] > best[:2] else best
        if best is None:
            return None
        rank, score, kind = best
        medians = dict(self.baselines.medians())  # as they are now, whenever reasons are read
        evidence = {
            "profile": p,
            "harvest_shape": shape,
            "population_medians": medians,
            "baseline_samples": self.baselines.samples,
        }
        if kind == "template_chain":
            write = partial(self._template_reasons, p, medians)
        else:
            reasons = (
                self._reasoning_reasons
                if kind == "reasoning_elicitation"
                else self._harvest_reasons
            )
            write = partial(reasons, snap, shape, medians)
        return Finding(kind, score, SEVERITIES[rank], Reasons(write), evidence)

    def learn(self, snap: Snapshot, flagged: bool) -> None:
        # Only settled profiles of unflagged accounts: campaign accounts are flagged by the time
        # their profile has ``min_events``, so they do not drag the medians towards themselves.
        settled = snap.events >= self.settings.min_events
        if snap.completed_hour is not None and not flagged and settled and snap.profile:
            self.baselines.learn(snap.profile)

    def _rank(self, score: float) -> int:
        """Severity rank of a score (an index into SEVERITIES: low, medium or high)."""
        if score >= self.settings.severity_high:
            return 2
        return 1 if score >= self.settings.severity_medium else 0

    @staticmethod
    def _versus(key: str, value: float, medians: Medians) -> str:
        median = medians[key]
        return f"{value:.0%}" + ("" if median is None else f" (population median {median:.0%})")

    def _common_reasons(self, snap: Snapshot, shape: float, medians: Medians) -> list[str]:
        p = snap.profile
        return [
            f"requests shaped for harvesting: {shape:.0%} by weight ({self._versus('at_limit', p['at_limit'], medians)} "
            f"run to the output limit, {self._versus('single_turn', p['single_turn'], medians)} single-turn, "
            f"{p['stream_off']:.0%} without streaming, {p['fixed_temperature']:.0%} at a fixed temperature)",
            f"{self._versus('dup', p['dup'], medians)} of recent prompts are near-duplicates of the account's own; "
            f"longest chain {p['template_chain_max']:.0f}, {p['templates_seen']:.0f} template(s) in "
            f"{snap.events} requests",
        ]

    def _reasoning_reasons(self, snap: Snapshot, shape: float, medians: Medians) -> tuple[str, ...]:
        p = snap.profile
        return (
            f"{self._versus('reasoning', p['reasoning'], medians)} of recent prompts ask for the model's "
            f"internal reasoning (alert at {self.settings.reasoning_share:.0%})",
            *self._common_reasons(snap, shape, medians),
        )

    def _harvest_reasons(self, snap: Snapshot, shape: float, medians: Medians) -> tuple[str, ...]:
        p = snap.profile
        mix = sorted(((p[t], t) for t in HARVEST_TAGS if p[t] >= 0.05), reverse=True)
        return (
            f"{self._versus('harvest', p['harvest'], medians)} of recent prompts target harvestable capabilities: "
            + ", ".join(f"{HARVEST_NAMES[t]} {v:.0%}" for v, t in mix),
            *self._common_reasons(snap, shape, medians),
        )

    def _template_reasons(self, p: dict[str, float], medians: Medians) -> tuple[str, ...]:
        return (
            f"chain of {p['template_chain_max']:.0f} near-identical prompts; "
            f"{self._versus('dup', p['dup'], medians)} of recent prompts repeat one of "
            f"{p['templates_seen']:.0f} template(s)",
            f"{self._versus('harvest', p['harvest'], medians)} of them target harvestable capabilities",
        )
