"""The matrix report from hand-made draws: every row, the header facts, JSON and heatmaps."""

from __future__ import annotations

from pathlib import Path

import orjson

from detector_lab.evaluation import matrix_report
from detector_lab.evaluation.matrix import aggregate
from tests.lab.evaluation.handmade import ALERTS, score

META = {"suite": "test", "half": "b", "scale": 1.0, "detector_version": "9.9.9",
        "seconds": 12.0, "generated_at": "2026-01-01T00:00:00Z"}  # fmt: skip


def _draws() -> list:
    missed = [a for a in ALERTS if a["subject_id"] != "h1" and a["type"] != "model_pivot"]
    return [score(3), score(4, missed)]


def test_markdown_states_the_protocol_and_has_a_row_per_cell() -> None:
    scores = _draws()
    text = matrix_report.markdown(aggregate(scores), scores, META, ["recall_matrix.png"])
    assert "# Evaluation: suite `test`" in text
    assert "2 draws (draws 3–4; seeds 10, 11)" in text and "detector 9.9.9" in text
    assert "**Caveat.**" in text and "cannot show" in text
    assert "| hydra | none | 2 | 4 | 75% [50% #4] |" in text
    assert "| hydra | language:zh | 2 | 2 | 0% [0% #3] | — [— ×2 #3] |" in text
    assert "2.0 h [— #4]" in text  # the pivot missed in draw 4
    assert (
        "| enterprise_batch | 2 | 2 | 100.00% [100.00% #3] | template_reuse 2, volume_spike 2 |"
        in text
    )
    assert "| individuals | 2 | 4 | 0.00% [0.00% #3] | - |" in text
    assert "![recall_matrix.png](recall_matrix.png)" in text


def test_markdown_shows_the_targets_right_after_the_headline() -> None:
    scores = _draws()
    text = matrix_report.markdown(aggregate(scores), scores, META, [])
    after = text.split("| precision |", 1)[1].split("\n")
    assert after[2] == "## Targets (issue 30), worst draw unless stated"
    assert after[4] == "| criterion | target | measured | PASS/FAIL |"
    rows = after[6:13]
    assert len(rows) == 7 and after[13] == "" and after[14] == "## Campaigns: family × variant"
    assert rows[1] == (
        "| malicious-account recall, median over draws | ≥ 95.0% | 50.0%; "
        "draws below: 2 (#3 (60.0%), #4 (40.0%)) | **FAIL** |"
    )
    assert rows[5].endswith("alerts fail: 2 (#3 c2 coordinated_cluster (1/2), "
                            "#4 c2 coordinated_cluster (1/2)) | **FAIL** |")  # fmt: skip
    assert rows[6] == (
        "| model-pivot alert after the release, every campaign that moved | ≤ 6.0 h | —; "
        "campaigns fail: 1 (hydra/none #4 (—)) | **FAIL** |"
    )


def test_json_and_heatmaps_are_written(tmp_path: Path) -> None:
    scores = _draws()
    matrix = aggregate(scores)
    matrix_report.write_json(matrix, scores, META, tmp_path / "report.json")
    doc = orjson.loads((tmp_path / "report.json").read_bytes())
    assert doc["meta"]["suite"] == "test" and [d["draw"] for d in doc["draws"]] == [3, 4]
    assert doc["targets"]["passed"] is False and doc["targets"]["thresholds"]["ari_min"] == 0.9
    family = doc["targets"]["criteria"][0]
    assert (family["key"], family["value"], family["passed"]) == ("family_detection", 0.3333, False)
    assert doc["draws"][0]["campaign_alerts"] == 3
    assert doc["draws"][0]["mixed_campaign_alerts"] == [
        {"campaign": "c2", "type": "coordinated_cluster", "ts": 500.0, "accounts": 2, "honest": 1}
    ]
    hydra = next(
        r for r in doc["matrix"]["campaigns"] if r["variant"] == "none" and r["family"] == "hydra"
    )
    assert hydra["recall"] == {
        "median": 0.75,
        "worst": 0.5,
        "worst_draw": 4,
        "draws": 2,
        "missing": 0,
    }
    assert [c["recall"] for c in doc["draws"][0]["campaigns"]] == [0.0, 1.0, 0.5]
    assert {h["family"]: h["fpr_by_draw"] for h in doc["matrix"]["honest"]}["enterprise_batch"] == {
        "3": 1.0,
        "4": 1.0,
    }
    pngs = matrix_report.plots(matrix, tmp_path)
    assert pngs == ["recall_matrix.png", "honest_fpr.png"]
    assert all((tmp_path / p).stat().st_size > 5000 for p in pngs)


def test_an_empty_matrix_still_renders(tmp_path: Path) -> None:
    matrix = aggregate([])
    assert "(no campaigns)" in matrix_report.markdown(matrix, [], META, [])
    assert matrix_report.plots(matrix, tmp_path) == ["recall_matrix.png", "honest_fpr.png"]
