"""The HTTP endpoints: /metrics (Prometheus text format), /healthz (alive), /readyz (ready)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LIVENESS_TIMEOUT_S = 120.0  # the worker loop must turn at least this often to count as alive


class Health:
    """Set by the worker loop, read by the HTTP handler."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "starting"
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < LIVENESS_TIMEOUT_S


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "detector"  # not the Python version: nothing to fingerprint
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive
                self._reply(200 if ok else 503, b"ok\n" if ok else b"worker loop stalled\n")
            elif path == "/readyz":
                text = b"ready\n" if health.ready else f"not ready: {health.reason}\n".encode()
                self._reply(200 if health.ready else 503, text)
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            pass

    return Handler


class HealthServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(registry, health))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
