"""``detector eval`` on the CI scenario, end to end, with floors on its numbers.

The floors sit well below what the detector reaches (see docs/evaluation.md), so a
regression fails the build and noise does not.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detector.cli import main

pytestmark = pytest.mark.integration

# Reached on this scenario when the floors were set: FPR 0.0, precision 1.0, recall 0.93,
# every campaign at least 83% caught (docs/evaluation/report.md has the default scenario).
MAX_BENIGN_FPR = 0.02
MIN_PRECISION = 0.8
MIN_RECALL = 0.6
MIN_CAMPAIGN_RATE = 0.4
MIN_PURITY = 0.7  # reached: 1.0, adjusted Rand index 1.0, one model_pivot for the hydra campaign
MIN_ARI = 0.4


def test_eval_ci_scenario_writes_report_and_meets_floors(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["eval", "--scenario", "ci", "--out", str(out)]) == 0
    for name in ("events.jsonl", "labels.json", "alerts.jsonl", "report.json", "report.md", "flagged_by_group.png",
                 "detection_delay.png", "score_distribution.png", "alerts_over_time.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    report = orjson.loads((out / "report.json").read_bytes())
    groups = {g["group"]: g for g in report["groups"]}
    assert {
        "individuals",
        "enterprise_batch",
        "benchmark_runs",
        "hydra_reseller",
        "reasoning_rubric",
    } <= set(groups)
    assert sum(g["accounts"] for g in groups.values()) == report["meta"]["accounts"]
    assert report["benign_fpr"] <= MAX_BENIGN_FPR
    assert report["precision"] >= MIN_PRECISION
    assert report["recall"] >= MIN_RECALL
    for g in groups.values():
        if g["label"] == "malicious":
            assert g["rate"] >= MIN_CAMPAIGN_RATE, g["group"]
            assert g["delay_median_s"] is not None and g["events_before_detection_median"] >= 1

    grouping = report["campaign_grouping"]
    assert grouping["purity"] >= MIN_PURITY and grouping["adjusted_rand_index"] >= MIN_ARI
    assert any(p["true_campaign"] == "hydra_reseller" for p in report["model_pivots"])

    # The per-account behaviour findings carry their numbers and the anomaly model's view.
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    harvest = [a for a in alerts if a["type"] in ("capability_harvest", "reasoning_elicitation")]
    assert harvest and all(a["severity"] != "low" or a["score"] < 0.5 for a in harvest)
    assert all(
        {"profile", "harvest_shape", "population_medians"} <= set(a["evidence"]) for a in harvest
    )
    # The anomaly model scores every Nth event of an account: alerts raised at those carry it.
    assert any("anomaly" in a["evidence"] for a in harvest)
    alerts_text = (out / "alerts.jsonl").read_text()
    events = [
        orjson.loads(line) for line in (out / "events.jsonl").read_bytes().splitlines()[:2000]
    ]
    assert not any(
        e["prompt"][:40] in alerts_text for e in events
    )  # no prompt text reaches an alert

    # The same files scored again through --events/--labels give the same numbers.
    again = tmp_path / "again"
    assert main(["eval", "--events", str(out / "events.jsonl"), "--labels", str(out / "labels.json"),
                 "--out", str(again)]) == 0  # fmt: skip
    second = orjson.loads((again / "report.json").read_bytes())
    assert (second["precision"], second["recall"], second["groups"]) == (
        report["precision"],
        report["recall"],
        report["groups"],
    )


def test_eval_needs_a_scenario_or_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--events", "x.jsonl"]) == 2
    assert "--scenario" in capsys.readouterr().err
