"""The alert rules, checked and unit-tested by the real promtool, and their runbooks."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from detector.config import Settings
from tests.tools import DEPLOY, REPO, binary, run

RULES = DEPLOY / "prometheus" / "rules" / "detector.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "detector.rules.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


ALERTS = _alert_rules()
NAMES = [rule["alert"] for rule in ALERTS]


def test_promtool_checks_the_rules() -> None:
    result = run(binary("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS) + 3} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run(binary("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_compose_prometheus_config() -> None:
    result = run(binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # the glob finds the rules next to it


def _cases() -> dict[str, tuple[int, int]]:
    """Per alert name: (test cases expecting it to fire, cases expecting silence)."""
    counts = {name: [0, 0] for name in NAMES}
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            counts[check["alertname"]][0 if check["exp_alerts"] else 1] += 1
    return {name: (firing, quiet) for name, (firing, quiet) in counts.items()}


CASES = _cases()


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_is_tested_firing_and_not_firing(name: str) -> None:
    firing, quiet = CASES[name]
    assert firing >= 1, f"{name}: no promtool test expects it to fire"
    assert quiet >= 1, f"{name}: no promtool test expects it to stay silent"


@pytest.mark.parametrize("rule", ALERTS, ids=NAMES)
def test_every_rule_has_severity_summary_description_and_a_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook_url"}
    assert all(notes[k].strip() for k in notes)
    runbook = REPO / notes["runbook_url"]
    assert runbook.is_file(), f"{rule['alert']}: {notes['runbook_url']} does not exist"
    assert rule["alert"] in runbook.read_text(), f"{runbook.name} does not mention {rule['alert']}"


def test_pager_runbook_exists_and_every_runbook_is_listed() -> None:
    assert (REPO / Settings().pager.runbook_url).is_file()
    index = (REPO / "docs" / "runbooks" / "README.md").read_text()
    for page in (REPO / "docs" / "runbooks").glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index, f"{page.name} missing from docs/runbooks/README.md"


def test_critical_rules_route_to_the_paging_receiver() -> None:
    amtool = binary("amtool")
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    for rule in ALERTS:
        labels = [f"alertname={rule['alert']}", f"severity={rule['labels']['severity']}"]
        result = run(amtool, "config", "routes", "test", f"--config.file={config}", *labels)
        expected = "pager" if rule["labels"]["severity"] == "critical" else "chat"
        assert result.stdout.strip() == expected, (rule["alert"], result.stdout, result.stderr)
