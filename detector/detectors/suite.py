"""The detectors of one worker, run in order, with a checkpoint of what they learned."""

from __future__ import annotations

import base64
import logging
import pickle
import zlib
from typing import Any

from detector.config import Settings
from detector.detectors import Detector, Finding
from detector.detectors.anomaly import AnomalyDetector
from detector.detectors.behaviour import BehaviourDetector, FeatureBaselines
from detector.detectors.volume import PopulationBaseline, VolumeRule
from detector.state.account import Snapshot

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 2


class DetectorSuite:
    def __init__(self, settings: Settings) -> None:
        self.baseline = PopulationBaseline(
            settings.volume_rule.baseline_min_samples, settings.volume_rule.baseline_prior_per_hour
        )
        self.anomaly = AnomalyDetector(settings.anomaly, settings.state)
        self.behaviour_baselines = FeatureBaselines(settings.behaviour.baseline_min_samples)
        self.detectors: list[Detector] = []
        # The anomaly model runs first: its score is evidence for every other finding.
        if settings.anomaly.enabled:
            self.detectors.append(self.anomaly)
        if settings.behaviour.enabled:
            self.detectors.append(BehaviourDetector(settings.behaviour, self.behaviour_baselines))
        if settings.volume_rule.enabled:
            self.detectors.append(VolumeRule(settings.volume_rule, settings.state, self.baseline))
        self._shape = (
            settings.anomaly.n_trees,
            settings.anomaly.height,
            settings.anomaly.window_size,
        )

    def evaluate(self, snap: Snapshot) -> tuple[list[Finding], dict[str, Any]]:
        context: dict[str, Any] = {}
        findings = [f for d in self.detectors if (f := d.evaluate(snap, context)) is not None]
        return findings, context

    def learn(self, snap: Snapshot, flagged: bool) -> None:
        for d in self.detectors:
            d.learn(snap, flagged)

    def checkpoint(self) -> str:
        """What the detectors learned, as compressed text for one Redis value."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "shape": self._shape,
            "model": self.anomaly.model,
            "learned": self.anomaly.learned,
            "baseline": self.baseline.export(),
            "behaviour_baselines": self.behaviour_baselines.export(),
        }
        return base64.b64encode(zlib.compress(pickle.dumps(state), 6)).decode("ascii")

    def restore(self, blob: str | bytes) -> bool:
        """Load a checkpoint written by ``checkpoint``; ignored if the model shape changed."""
        try:
            # The blob comes from our own Redis, written by ``checkpoint`` above. Anything odd
            # (another river version, a truncated value) means starting fresh, never a crash.
            state = pickle.loads(zlib.decompress(base64.b64decode(blob)))
            if state["format"] != CHECKPOINT_FORMAT or tuple(state["shape"]) != self._shape:
                log.warning("ignoring model checkpoint of another format or model shape")
                return False
            model, learned = state["model"], int(state["learned"])
            baseline, behaviour = state["baseline"], state["behaviour_baselines"]
        except Exception as exc:
            log.warning("ignoring unreadable model checkpoint: %s: %s", type(exc).__name__, exc)
            return False
        self.anomaly.model, self.anomaly.learned = model, learned
        self.baseline.load(baseline)
        self.behaviour_baselines.load(behaviour)
        return True
