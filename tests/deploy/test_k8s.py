"""The Kubernetes manifests render with the real kustomize (kubectl kustomize) and pass a
strict schema check (kubernetes-validate, offline OpenAPI schemas); then what operators rely on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.config import build_settings
from tests.tools import DEPLOY, run

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # native sidecars (init containers with restartPolicy) need 1.29+


def _kustomize(overlay: str) -> str:
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kustomize:
        result = run(kustomize, "build", str(K8S / overlay))
    elif kubectl:
        result = run(kubectl, "kustomize", str(K8S / overlay))
    else:
        pytest.skip("neither kustomize nor kubectl is installed: cannot render deploy/k8s")
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {overlay: _kustomize(overlay) for overlay in ("base", "sidecar")}


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _kind(docs: list[dict[str, Any]], kind: str, name: str = "") -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    return doc


def _validate(path: Path) -> tuple[int, str]:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extra")
    import kubernetes_validate

    failures = []
    for doc in _docs(path.read_text()):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    return len(failures), "\n".join(failures)


@pytest.mark.parametrize("overlay", ["base", "sidecar"])
def test_manifests_pass_the_strict_schema_check(
    rendered: dict[str, str], overlay: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered[overlay])
    count, failures = _validate(path)
    assert count == 0, failures


def test_the_schema_check_catches_a_misspelt_field(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    docs = _docs(rendered["base"])
    _kind(docs, "Deployment", "detector-worker")["spec"]["replicaz"] = 3
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    count, failures = _validate(path)
    assert count == 1 and "replicaz" in failures


def _settings(docs: list[dict[str, Any]], name: str) -> Any:
    config = _kind(docs, "ConfigMap", name)["data"]["config.yaml"]
    return build_settings(yaml.safe_load(config))  # the detector accepts the overlay as is


def test_workers_scale_up_to_the_partition_count(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["base"])
    settings = _settings(docs, "detector-config")
    worker = _kind(docs, "Deployment", "detector-worker")
    assert 1 <= worker["spec"]["replicas"] <= settings.kafka.topic_partitions
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert settings.metrics.host == "0.0.0.0"  # probes come from outside the container


def test_probes_resources_and_security(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["base"])
    for name in ("detector-worker", "detector-pager"):
        pod = _kind(docs, "Deployment", name)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        resources = container["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["image"].startswith("llm-distill-detector:")


def test_credentials_are_secret_references_never_values(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["base"])
    assert not [d for d in docs if d["kind"] == "Secret"]  # created by the operator, not here
    worker = _kind(docs, "Deployment", "detector-worker")["spec"]["template"]["spec"]
    [container] = worker["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "detector-credentials"
    settings = _settings(docs, "detector-config")
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(settings.kafka.sasl_password_file).parent) in mounted
    config = _kind(docs, "ConfigMap", "detector-config")["data"]["config.yaml"]
    assert "password:" not in config.replace("password_file", "").replace("password_env", "")


def test_disruption_budget_selects_the_workers(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["base"])
    pdb = _kind(docs, "PodDisruptionBudget", "detector-worker")
    worker = _kind(docs, "Deployment", "detector-worker")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_sidecar_pod_runs_the_tap_beside_the_inference_server(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["sidecar"])
    pod = _kind(docs, "Deployment", "inference-server")["spec"]["template"]["spec"]
    [tap] = pod["initContainers"]
    assert tap["restartPolicy"] == "Always"  # a native sidecar: up before, down after the server
    assert tap["args"][0] == "tap"
    assert "readinessProbe" not in tap  # a Kafka outage must not take inference out of service
    assert tap["livenessProbe"]["httpGet"]["path"] == "/healthz"
    settings = _settings(docs, "detector-tap-config")
    assert settings.tap.host == "127.0.0.1"  # only the pod's own containers can post
    [server] = pod["containers"]
    env = {e["name"]: e.get("value") for e in server.get("env", [])}
    assert env["DETECTOR_TAP_URL"] == f"http://127.0.0.1:{settings.tap.port}/v1/events"
    ports = {p["containerPort"] for p in tap["ports"]}
    assert settings.tap.port not in ports and settings.metrics.port in ports
