"""The HTTP endpoints: three paths on the configured address, and nothing else."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from detector.errors import ConfigError
from detector.health import Health, HealthServer


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, Health]]:
    registry = CollectorRegistry()
    Counter("detector_example_total", "an example", registry=registry).inc(3)
    health = Health()
    server = HealthServer("127.0.0.1", 0, registry, health).start()
    yield server, health
    server.stop()


def _request(server: HealthServer, path: str, method: str = "GET") -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, body, dict(response.getheaders())


def test_binds_the_configured_address(served: tuple[HealthServer, Health]) -> None:
    server, _ = served
    assert server._server.server_address[0] == "127.0.0.1"


def test_metrics_health_and_readiness(served: tuple[HealthServer, Health]) -> None:
    server, health = served
    status, body, _ = _request(server, "/metrics")
    assert status == 200 and "detector_example_total 3.0" in body
    assert _request(server, "/healthz")[0] == 200
    status, body, _ = _request(server, "/readyz")
    assert status == 503 and "starting" in body
    health.set_ready(True)
    assert _request(server, "/readyz?verbose=1")[0] == 200


@pytest.mark.parametrize(
    "path", ["/", "/metrics/../etc/passwd", "/debug", "/healthz/x", "/metricsx"]
)
def test_other_paths_are_not_found(served: tuple[HealthServer, Health], path: str) -> None:
    server, _ = served
    assert _request(server, path)[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_is_served(served: tuple[HealthServer, Health], method: str) -> None:
    server, _ = served
    assert _request(server, "/metrics", method)[0] == 501


def test_responses_do_not_name_the_runtime(served: tuple[HealthServer, Health]) -> None:
    server, _ = served
    _, _, headers = _request(server, "/healthz")
    assert "Python" not in headers.get("Server", "")


def test_a_port_in_use_names_the_setting_to_change() -> None:
    # regression: an OSError traceback that named neither the port nor the setting
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            HealthServer("127.0.0.1", port, CollectorRegistry(), Health())
    assert str(caught.value) == (
        f"metrics.port {port} on 127.0.0.1 is in use: set metrics.port (or "
        "DETECTOR__METRICS__PORT) to a free port, or 0 for any"
    )


def test_an_address_not_of_this_machine_names_metrics_host() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of the machine running the tests
    with pytest.raises(ConfigError, match=r"^metrics\.host 192\.0\.2\.1 .*DETECTOR__METRICS__HOST"):
        HealthServer("192.0.2.1", 0, CollectorRegistry(), Health())
