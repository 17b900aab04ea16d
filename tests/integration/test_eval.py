"""``detector eval`` end to end: the ``ci`` suite (one small draw of the test protocol) with
floors on its matrix, and the ``ci`` scenario that the default report and the demo share.

The floors sit far below what was measured, so that noise and small changes pass and a real
regression (a family no longer caught, an honest family newly flagged, a report missing a
column) fails. They are not tuned to this one draw: each is the measured value minus a wide
margin, and the next issue is meant to move the measured values, not the floors.

Measured on the ``ci`` suite's draw 0 (seed 900000000, phrase half ``test``, 452 accounts,
14,761 events) when the floors were set (detector 0.1.0, issue 29; the 28-draw ``test``
report then had recall 0.31 median, 0.0 worst):

- recall 0.42 pooled; per row: lockstep language:zh+human_pacing 0%, low_and_slow_residential
  slow_ramp 0%, persona_template none 100%, persona_template random_params+reseller_pool 100%,
  residential_mimic slow_ramp+per_account_payment 100%;
- precision 0.67; benign false-positive rate 0.071; twelve of fifteen honest families at 0%,
  and three at 100% (coding_agent_users, essay_graders, ide_assistants: the known false
  positives below, flagged by coordinated_cluster and template_chain);
- campaign grouping purity 0.77, adjusted Rand index 0.71.

Measured again after issue 30's group stage (same draw): recall 0.94 pooled (lockstep
language:zh+human_pacing 100%, low_and_slow_residential slow_ramp 89%, persona_template
none 100%, persona_template random_params+reseller_pool 100%, residential_mimic
slow_ramp+per_account_payment 93%); precision 0.99; benign false-positive rate 0.003, all
from essay_graders' one account (capability_harvest); coding_agent_users and
ide_assistants at 0%.

The scenario floors were set on ``config/scenarios/ci.yaml`` (seed 7): FPR 0.0, precision 1.0,
recall 0.99, every campaign at least 83% caught, purity and adjusted Rand index 1.0.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detector.cli import main

pytestmark = pytest.mark.integration

# --- the ci suite: floors = measured minus a wide margin ----------------------------------------
SUITE_MIN_RECALL = 0.6  # measured 0.94 (0.42 before issue 30)
SUITE_MIN_BEST_ROW_RECALL = 0.5  # measured 1.0: at least one family x variant still caught
SUITE_MIN_PRECISION = 0.8  # measured 0.99 (0.67)
SUITE_MAX_BENIGN_FPR = 0.03  # measured 0.003 (0.071)
SUITE_MAX_FAMILY_FPR = 0.25  # measured 0.0 for every honest family but the known one
# Flagged when the floors were set (its one account in this draw, by capability_harvest);
# clear it, then drop it from this set so that its ceiling applies too.
KNOWN_FALSE_POSITIVES = frozenset({"essay_graders"})
REPORT_FILES = ("report.md", "report.json", "recall_matrix.png", "honest_fpr.png")
DRAW_FILES = ("events.jsonl", "labels.json", "alerts.jsonl", "report.json", "score.json")
CAMPAIGN_COLUMNS = {"recall", "delay_s", "events_before_detection", "grouped", "purity",
                    "adjusted_rand_index", "pivot_delay_h"}  # fmt: skip


def test_eval_ci_suite_reports_the_matrix_and_meets_floors(tmp_path: Path) -> None:
    out, data = tmp_path / "report", tmp_path / "data"
    assert main(["eval", "--suite", "ci", "--out", str(out), "--data", str(data)]) == 0
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    draw = data / "draw-000"
    for name in DRAW_FILES:
        assert (draw / name).stat().st_size > 0, name
    doc = orjson.loads((out / "report.json").read_bytes())
    meta, matrix = doc["meta"], doc["matrix"]
    assert (meta["suite"], meta["half"], meta["draws"], meta["first"]) == ("ci", "test", 1, 0)
    assert meta["seeds"] == [doc["draws"][0]["seed"]] and meta["detector_version"]

    # Complete: a row for every campaign family x variant and every honest family in the draw.
    truth = orjson.loads((draw / "labels.json").read_bytes())["accounts"].values()
    campaigns = {(t["family"], t["variant"]) for t in truth if t["label"] == "malicious"}
    honest = {t["family"] for t in truth if t["label"] == "benign"}
    rows = {(r["family"], r["variant"]): r for r in matrix["campaigns"]}
    assert set(rows) == campaigns and {h["family"] for h in matrix["honest"]} == honest
    for key, row in rows.items():
        assert set(row) >= CAMPAIGN_COLUMNS and row["recall"]["draws"] == 1, key
        if row["recall"]["median"] > 0:  # caught accounts have a delay and an event count
            assert row["delay_s"]["median"] is not None, key
            assert row["events_before_detection"]["median"] >= 1, key
    text = (out / "report.md").read_text()
    assert "**Caveat.**" in text and "suite `ci`" in text and meta["detector_version"] in text
    assert all(f"| {family} | {variant} |" in text for family, variant in campaigns)

    # Floors.
    assert matrix["recall"]["median"] >= SUITE_MIN_RECALL
    assert max(r["recall"]["median"] for r in rows.values()) >= SUITE_MIN_BEST_ROW_RECALL
    assert matrix["precision"]["median"] >= SUITE_MIN_PRECISION
    assert matrix["benign_fpr"]["worst"] <= SUITE_MAX_BENIGN_FPR
    for h in matrix["honest"]:
        if h["family"] not in KNOWN_FALSE_POSITIVES:
            assert h["fpr"]["worst"] <= SUITE_MAX_FAMILY_FPR, (h["family"], h["flagged_by"])

    # `simulate --suite ci --draw 0` writes the very traffic the evaluation replayed.
    again = tmp_path / "simulated"
    assert main(["simulate", "--suite", "ci", "--draw", "0", "--out", str(again)]) == 0
    assert (again / "events.jsonl").read_bytes() == (draw / "events.jsonl").read_bytes()


# --- the ci scenario (the default report's and the demo's format) --------------------------------
MAX_BENIGN_FPR = 0.02
MIN_PRECISION = 0.8
MIN_RECALL = 0.6
MIN_CAMPAIGN_RATE = 0.4
MIN_PURITY = 0.7
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

    # The per-account behaviour findings inform (low, behaviour.max_severity) with their
    # numbers and the anomaly model's view; accounts are flagged as campaign members.
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    harvest = [a for a in alerts if a["type"] in ("capability_harvest", "reasoning_elicitation")]
    assert harvest and all(a["severity"] == "low" for a in harvest)
    assert any(a["score"] >= 0.5 for a in harvest)  # strong ones among them, still low
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


def test_eval_needs_a_scenario_a_suite_or_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--events", "x.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--scenario" in err and "--suite" in err
