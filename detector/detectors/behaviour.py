"""What a distillation account does differently, from its own requests: templates, intent, shape.

Three findings, each gated by its own evidence and scored from 0 to 1:

- ``reasoning_elicitation``: many prompts ask for the model's internal reasoning itself;
- ``capability_harvest``: prompts concentrate on harvestable capabilities (reasoning,
  rubric grading, safe rewrites, agentic coding, tool use) and the requests are shaped
  for harvesting (outputs run to the limit, single turn, fixed sampling, no streaming);
- ``template_chain``: long chains of near-identical prompts, informational (low): app
  backends, batch jobs and graders look like this, with or without harvesting intent;
  templated campaigns are found as groups (``detector.campaigns``).

The first two are at most ``max_severity`` (low by default): one account's prompts do not
tell a harvester from an honest product with one use case, so they inform, and a group's
judgement (``detector.campaigns.judge``) reads the same intent for the group as a whole.

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

    def learn(self, behaviour: dict[str, float]) -> None:
        for key, quantile in self._medians.items():
            quantile.update(behaviour.get(key, 0.0))
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


def harvest_shape(behaviour: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted share of harvesting-shaped requests, 0..1.

    >>> harvest_shape({"at_limit": 1.0, "single_turn": 1.0, "stream_off": 0.0, "fixed_temperature": 0.0},
    ...               {"at_limit": 0.5, "single_turn": 0.5, "stream_off": 0.0, "fixed_temperature": 0.0})
    1.0
    """
    return round(sum(behaviour.get(k, 0.0) * w for k, w in weights.items()), 4)


class BehaviourDetector:
    def __init__(self, settings: BehaviourSettings, baselines: FeatureBaselines) -> None:
        self.settings = settings
        self.baselines = baselines

    def evaluate(self, snap: Snapshot, context: dict[str, Any]) -> Finding | None:
        # The suite takes one finding per detector: the strongest of the three, the others'
        # numbers in its evidence. This runs for every event, so the three are scored inline
        # and only the chosen one gets evidence, and reasons only if an alert reads them.
        s = self.settings
        if snap.events < s.min_events or not snap.behaviour:
            return None
        b = snap.behaviour
        shape = harvest_shape(b, s.shape_weights)
        context["behaviour"] = {"harvest_shape": shape, "harvest": b["harvest"], "dup": b["dup"]}
        best: tuple[int, float, str] | None = None  # (severity rank, score, type)
        manner = (1 - s.repetition_weight) * shape + s.repetition_weight * b["dup"]
        if b["reasoning"] >= s.reasoning_share:
            # Asking for the internal reasoning is itself strong: half the score without any shape.
            score = round(min(1.0, b["reasoning"] / 0.8) * (0.5 + 0.5 * manner), 4)
            best = (self._rank(score), score, "reasoning_elicitation")
        if b["harvest"] >= s.harvest_share:
            # Honest products use these capabilities too: it takes the intent *and* the manner.
            score = round(b["harvest"] * manner, 4)
            candidate = (self._rank(score), score, "capability_harvest")
            best = candidate if best is None or candidate[:2] > best[:2] else best
        if b["dup"] >= s.template_share and b["template_chain_max"] >= s.template_chain:
            score = round(0.5 * b["dup"] + 0.5 * min(1.0, b["template_chain_max"] / 50), 4)
            candidate = (0, score, "template_chain")
            best = candidate if best is None or candidate[:2] > best[:2] else best
        if best is None:
            return None
        rank, score, kind = best
        medians = dict(self.baselines.medians())  # as they are now, whenever reasons are read
        evidence = {
            "profile": b,  # the alert's name for the account's behaviour
            "harvest_shape": shape,
            "population_medians": medians,
            "baseline_samples": self.baselines.samples,
        }
        write = partial(self.reasons, kind, snap, shape, medians)
        return Finding(kind, score, SEVERITIES[rank], Reasons(write), evidence)

    def learn(self, snap: Snapshot, flagged: bool) -> None:
        # Only settled accounts, and unflagged ones: campaign accounts are flagged by the time
        # they have ``min_events``, so they do not drag the medians towards themselves.
        settled = snap.events >= self.settings.min_events
        if snap.completed_hour is not None and not flagged and settled and snap.behaviour:
            self.baselines.learn(snap.behaviour)

    def reasons(self, kind: str, snap: Snapshot, shape: float, medians: Medians) -> tuple[str, ...]:
        """The reasons of a finding of ``kind`` at ``snap``, with the population ``medians``
        of its evaluation: what ``evaluate``'s ``Reasons`` write when an alert reads them."""
        if kind == "template_chain":
            return self._template_reasons(snap.behaviour, medians)
        if kind == "reasoning_elicitation":
            return self._reasoning_reasons(snap, shape, medians)
        return self._harvest_reasons(snap, shape, medians)

    def _rank(self, score: float) -> int:
        """Severity rank of a score (an index into SEVERITIES: low, medium or high), at most
        ``max_severity``'s."""
        s = self.settings
        rank = 2 if score >= s.severity_high else 1 if score >= s.severity_medium else 0
        return min(rank, SEVERITIES.index(s.max_severity))

    @staticmethod
    def _versus(key: str, value: float, medians: Medians) -> str:
        median = medians[key]
        return f"{value:.0%}" + ("" if median is None else f" (population median {median:.0%})")

    def _common_reasons(self, snap: Snapshot, shape: float, medians: Medians) -> list[str]:
        b = snap.behaviour
        return [
            f"requests shaped for harvesting: {shape:.0%} by weight ({self._versus('at_limit', b['at_limit'], medians)} "
            f"run to the output limit, {self._versus('single_turn', b['single_turn'], medians)} single-turn, "
            f"{b['stream_off']:.0%} without streaming, {b['fixed_temperature']:.0%} at a fixed temperature)",
            f"{self._versus('dup', b['dup'], medians)} of recent prompts are near-duplicates of the account's own; "
            f"longest chain {b['template_chain_max']:.0f}, {b['templates_seen']:.0f} template(s) in "
            f"{snap.events} requests",
        ]

    def _reasoning_reasons(self, snap: Snapshot, shape: float, medians: Medians) -> tuple[str, ...]:
        b = snap.behaviour
        return (
            f"{self._versus('reasoning', b['reasoning'], medians)} of recent prompts ask for the model's "
            f"internal reasoning (alert at {self.settings.reasoning_share:.0%})",
            *self._common_reasons(snap, shape, medians),
        )

    def _harvest_reasons(self, snap: Snapshot, shape: float, medians: Medians) -> tuple[str, ...]:
        b = snap.behaviour
        mix = sorted(((b[t], t) for t in HARVEST_TAGS if b[t] >= 0.05), reverse=True)
        return (
            f"{self._versus('harvest', b['harvest'], medians)} of recent prompts target harvestable capabilities: "
            + ", ".join(f"{HARVEST_NAMES[t]} {v:.0%}" for v, t in mix),
            *self._common_reasons(snap, shape, medians),
        )

    def _template_reasons(self, b: dict[str, float], medians: Medians) -> tuple[str, ...]:
        return (
            f"chain of {b['template_chain_max']:.0f} near-identical prompts; "
            f"{self._versus('dup', b['dup'], medians)} of recent prompts repeat one of "
            f"{b['templates_seen']:.0f} template(s)",
            f"{self._versus('harvest', b['harvest'], medians)} of them target harvestable capabilities",
        )
