"""The Compose stack and the image, checked without a Docker engine: the real docker-compose
validates the file against the Compose schema, and the rest is read with PyYAML."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.config import Settings
from tests.tools import DEPLOY, REPO, binary, run

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
SPEC = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, Any] = SPEC["services"]
DETECTOR_SERVICES = ("detector", "tap", "pager", "traffic")


def _script(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, COMPOSE_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docker_compose_validates_the_file() -> None:
    result = run(binary("docker-compose"), "-f", str(COMPOSE), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_kafka_is_the_apache_image_in_kraft_mode_without_zookeeper() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert not any("zookeeper" in name for name in SERVICES)
    assert not any(
        "ZOOKEEPER" in key for s in SERVICES.values() for key in s.get("environment", {})
    )


def test_redis_7_and_its_exporter() -> None:
    assert re.match(r"redis:7\.", SERVICES["redis"]["image"])
    assert SERVICES["redis-exporter"]["environment"]["REDIS_ADDR"] == "redis://redis:6379"


def test_images_are_pinned_and_ports_stay_on_loopback() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_detector_services_share_one_image_and_reach_kafka_and_redis() -> None:
    for name in DETECTOR_SERVICES:
        service = SERVICES[name]
        assert service["build"] == {"context": "../..", "dockerfile": "Dockerfile"}, name
        assert service["image"] == SERVICES["detector"]["image"]
    for name in ("detector", "tap", "pager"):
        env = SERVICES[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert SERVICES["detector"]["deploy"]["replicas"] <= Settings().kafka.topic_partitions
    assert SERVICES["traffic"]["depends_on"]["tap"]["condition"] == "service_healthy"


def test_every_mounted_file_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_every_service_with_the_jobs_the_rules_use() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["detector"]["dns_sd_configs"][0]["names"] == ["detector"]
    assert jobs["detector"]["dns_sd_configs"][0]["port"] == Settings().metrics.port
    for job, target in (
        ("detector-pager", "pager:9108"),
        ("detector-tap", "tap:9108"),
        ("redis", "redis-exporter:9121"),
    ):
        [host] = jobs[job]["static_configs"][0]["targets"]
        assert host == target
        assert host.split(":")[0] in SERVICES
    rules = (DEPLOY / "prometheus" / "rules" / "detector.rules.yml").read_text()
    for job in ("detector", "detector-pager", "detector-tap"):
        assert f'job="{job}"' in rules or job in rules
    [am] = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in SERVICES


def test_demo_alertmanager_routes_like_the_production_config() -> None:
    demo = yaml.safe_load((COMPOSE_DIR / "alertmanager.yml").read_text())
    prod = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert demo["route"] == prod["route"]
    assert demo["inhibit_rules"] == prod["inhibit_rules"]
    assert {r["name"] for r in demo["receivers"]} == {r["name"] for r in prod["receivers"]}


def test_amtool_accepts_both_alertmanager_configs() -> None:
    amtool = binary("amtool")
    for config in (COMPOSE_DIR / "alertmanager.yml", DEPLOY / "alertmanager" / "alertmanager.yml"):
        result = run(amtool, "check-config", str(config))
        assert result.returncode == 0, result.stdout + result.stderr


def _dockerfile() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_image_runs_as_a_numeric_non_root_user_with_a_health_check() -> None:
    lines = _dockerfile()
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    [user] = [line for line in final if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric: Kubernetes runAsNonRoot can check it
    [health] = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert "/healthz" in health and "DETECTOR__METRICS__PORT" in health
    assert 'ENTRYPOINT ["detector"]' in final
    assert any("DETECTOR__METRICS__HOST=0.0.0.0" in line for line in final)


def test_image_base_is_pinned_and_slim() -> None:
    for line in _dockerfile():
        if line.startswith("FROM "):
            image = line.split()[1]
            assert re.fullmatch(r"python:3\.1[1-9]-slim-\w+", image), image


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    copied = {
        line.split()[1].rstrip("/")
        for line in _dockerfile()
        if line.startswith("COPY ") and "--from" not in line
    }
    for name in copied - {"./"}:
        assert f"!{name}" in lines or f"!{name}/" in lines, f"{name} is copied but ignored"


def test_healthcheck_command_compiles() -> None:
    [health] = [line for line in _dockerfile() if line.startswith("HEALTHCHECK ")]
    code = re.search(r'"-c", "(.*)"\]', health)
    assert code
    compile(code.group(1), "HEALTHCHECK", "exec")


def test_webhook_log_prints_one_line_per_alert() -> None:
    hook = _script("webhook_log")
    notification = {
        "alerts": [
            {"status": "firing", "labels": {"severity": "critical", "alertname": "DetectorCampaign",
             "campaign_id": "cmp-1"}, "annotations": {"summary": "Critical coordinated_cluster"}},
        ]
    }  # fmt: skip
    [line] = hook.lines("pager", notification)
    assert line.startswith("[pager] FIRING") and "cmp-1" in line and "Critical" in line


def test_traffic_restamps_rounds_into_the_past_with_fresh_ids() -> None:
    traffic = _script("traffic")
    events = [
        {
            "event_id": "e1",
            "ts": 100.0,
            "account_id": "a",
            "model": "m",
            "account_created_ts": 50.0,
        },
        {"event_id": "e2", "ts": 160.0, "account_id": "b", "model": "m"},
    ]
    again = list(traffic.restamp(events, 2, now=1000.0))
    assert [e["ts"] for e in again] == [940.0, 1000.0]
    assert again[0]["account_created_ts"] == 890.0
    assert [e["event_id"] for e in again] == ["e1~r2", "e2~r2"]
    assert [e["account_id"] for e in again] == ["a~r2", "b~r2"]
    assert [e["event_id"] for e in traffic.restamp(events, 0, now=160.0)] == ["e1", "e2"]


@pytest.mark.parametrize("name", ["traffic", "webhook_log"])
def test_scripts_are_mounted_where_compose_runs_them(name: str) -> None:
    mounts = [v for s in SERVICES.values() for v in s.get("volumes", [])]
    assert any(m.startswith(f"./{name}.py:/{name}.py") for m in mounts)
    assert Path(COMPOSE_DIR / f"{name}.py").is_file()
