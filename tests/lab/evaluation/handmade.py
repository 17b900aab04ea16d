"""A hand-made draw: labels with family and variant, event times, models and alerts."""

from __future__ import annotations

from typing import Any

from detector_lab.evaluation.cells import DrawScore, score_draw
from detector_lab.evaluation.scoring import evaluate

RELEASE_TS = 1000.0


def label(kind: str, group: str, family: str, variant: str = "none") -> dict[str, str]:
    return {"label": kind, "group": group, "family": family, "variant": variant}


LABELS = {
    "u1": label("benign", "individuals", "individuals"),
    "u2": label("benign", "individuals", "individuals"),
    "e1": label("benign", "batch", "enterprise_batch"),
    "h1": label("malicious", "hydra_a", "hydra"),
    "h2": label("malicious", "hydra_a", "hydra"),
    "h3": label("malicious", "hydra_b", "hydra", "language:zh"),
    "l1": label("malicious", "slow", "low_and_slow"),
    "l2": label("malicious", "slow", "low_and_slow"),
}
TIMES = {a: [100.0, 200.0, 300.0, 400.0] for a in LABELS}
MODELS: dict[str, set[str]] = {a: {"old"} for a in LABELS}
MODELS["h1"] = {"old", "new"}  # hydra_a pivots to the newest model


def account(subject: str, severity: str, ts: float, type_: str = "capability_harvest") -> dict:
    return {"subject_type": "account", "subject_id": subject, "type": type_,
            "severity": severity, "ts": ts, "score": 0.8}  # fmt: skip


def campaign(cid: str, accounts: list[str], type_: str = "coordinated_cluster", ts: float = 500.0,
              **evidence: Any) -> dict:  # fmt: skip
    return {"subject_type": "campaign", "subject_id": cid, "type": type_, "severity": "high",
            "ts": ts, "score": 0.9, "accounts": accounts, "evidence": evidence}  # fmt: skip


ALERTS = [
    account("h1", "medium", 150.0),
    account("h2", "high", 350.0),
    account("h2", "low", 120.0),  # low never flags
    account("h3", "low", 120.0),
    account("l1", "high", 250.0),
    account("e1", "medium", 300.0, "volume_spike"),
    account("e1", "high", 320.0, "template_reuse"),
    campaign("c1", ["h1", "h2"]),
    campaign("c2", ["l1", "e1"]),  # a mixed campaign: half honest
    campaign("c1", ["h1", "h2"], "model_pivot", ts=RELEASE_TS + 2 * 3600, model="new"),
]


def score(draw: int = 0, alerts: list[dict] = ALERTS) -> DrawScore:
    evaluation = evaluate(alerts, LABELS, TIMES, RELEASE_TS)
    return score_draw(draw, 7 + draw, alerts, LABELS, TIMES, MODELS, "new", evaluation, 1.5)
