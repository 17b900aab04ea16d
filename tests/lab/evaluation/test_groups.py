"""The hindsight grouping probe on a small simulated draw: groups follow the campaigns."""

from __future__ import annotations

from pathlib import Path

import orjson

from detector.campaigns.grouping import GroupRules
from detector.campaigns.judge import JudgeRules
from detector.campaigns.weights import WeightRules
from detector_lab.evaluation.groups import probe, read_facts
from detector_lab.sim.generate import simulate
from detector_lab.sim.scenario import load_scenario


def test_the_probe_groups_campaign_accounts_and_leaves_honest_ones(tmp_path: Path) -> None:
    traffic = simulate(load_scenario("ci"))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in traffic.events))
    facts = read_facts(events)
    judged, score = probe(facts, traffic.labels, WeightRules(), GroupRules(), JudgeRules())
    assert judged and score.campaign_groups > 0
    campaign = sum(n for n, _, _ in score.families.values())
    flagged = sum(hit for _, _, hit in score.families.values())
    honest = sum(n for n, _ in score.honest.values())
    honest_flagged = sum(hit for _, hit in score.honest.values())
    assert flagged >= 0.5 * campaign, score.lines()
    assert honest_flagged <= 0.05 * honest, score.lines()
    assert any(line.startswith("groups:") for line in score.lines())
