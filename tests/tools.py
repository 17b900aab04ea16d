"""The real operations programs (Prometheus, promtool, Alertmanager, the Redis exporter,
kubectl, docker-compose) for tests: found on PATH or the test skips, naming what to install."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from detector.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
# Debian bookworm packages (.ci/run installs them where apt-get is available).
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "redis_exporter": "prometheus-redis-exporter",
    "docker-compose": "docker-compose",
}
START_TIMEOUT_S = 30.0


def binary(*names: str) -> str:
    """The first of ``names`` on PATH, or skip the test saying which package brings it."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    package = PACKAGES.get(names[0], names[0])
    pytest.skip(f"{names[0]} not found: install the Debian package {package} (.ci/run does)")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@contextlib.contextmanager
def server_process(args: list[str], ready_url: str, name: str) -> Iterator[Path]:
    """A real server in a child process until the block ends; yields its log file."""
    log = Path(tempfile.mkstemp(prefix=f"detector-test-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while http_get(ready_url, 1.0)[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def alertmanager(config: Path, workdir: Path) -> Iterator[str]:
    """A real Alertmanager on a free loopback port, clustering off; yields its base URL."""
    exe = binary("prometheus-alertmanager", "alertmanager")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with server_process(args, f"{url}/-/ready", "alertmanager"):
        yield url


@contextlib.contextmanager
def prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """A real Prometheus on a free loopback port; yields its base URL."""
    exe = binary("prometheus")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with server_process(args, f"{url}/-/ready", "prometheus"):
        yield url


class WebhookReceiver:
    """Stands in for the pager and chat: records every notification Alertmanager delivers."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _fast(route: dict[str, Any]) -> None:
    for key in ("group_wait", "group_interval"):
        if key in route:
            route[key] = "1s"
    for child in route.get("routes", []):
        _fast(child)


def alertmanager_test_config(receiver_url: str, directory: Path) -> Path:
    """deploy/alertmanager/alertmanager.yml with the same route tree, every receiver a webhook to
    ``receiver_url``/<receiver name>, and waits of one second so a test sees notifications soon."""
    import yaml

    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{receiver_url}/{r['name']}", "send_resolved": True}]}
        for r in config["receivers"]
    ]  # fmt: skip
    config["route"]["group_wait"] = config["route"]["group_interval"] = "1s"
    _fast(config["route"])
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def redis_exporter(redis_url: str) -> Iterator[str]:
    """The Prometheus Redis exporter (oliver006/redis_exporter) for ``redis_url``; yields host:port."""
    exe = binary("prometheus-redis-exporter", "redis_exporter")
    port = free_port()
    args = [exe, f"--redis.addr={redis_url}", f"--web.listen-address=127.0.0.1:{port}"]
    with server_process(args, f"http://127.0.0.1:{port}/metrics", "redis-exporter"):
        yield f"127.0.0.1:{port}"


def prometheus_query(base_url: str, query: str) -> dict[str, Any]:
    """One instant query through the HTTP API (/api/v1/query); the decoded answer."""
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    status, body = http_get(url)
    answer: dict[str, Any] = (
        json.loads(body) if body else {"status": "error", "error": f"HTTP {status}"}
    )
    return answer
