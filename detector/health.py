"""The HTTP endpoints: /metrics (Prometheus text format), /healthz (alive), /readyz (ready)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from detector.config import env_name
from detector.errors import ConfigError

LIVENESS_TIMEOUT_S = 120.0  # the worker loop must turn at least this often to count as alive
SHUTDOWN_POLL_S = 0.1  # how soon the server thread notices stop(); a command waits this long


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

    @property
    def problem(self) -> str:
        """Why the process is not alive, for /healthz."""
        return "worker loop stalled"


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
                self._reply(200 if ok else 503, b"ok\n" if ok else f"{health.problem}\n".encode())
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


def listen(
    host: str, port: int, handler: type[BaseHTTPRequestHandler], section: str
) -> ThreadingHTTPServer:
    """An HTTP server bound to ``host:port``; if it cannot bind, a ConfigError that names the
    settings ``<section>.host`` / ``<section>.port`` to change (an OSError would name neither)."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(_bind_problem(host, port, section, exc)) from None


def _bind_problem(host: str, port: int, section: str, exc: OSError) -> str:
    set_port = f"set {section}.port (or {env_name(section, 'port')})"
    set_host = f"set {section}.host (or {env_name(section, 'host')})"
    if exc.errno == errno.EADDRINUSE:
        return f"{section}.port {port} on {host} is in use: {set_port} to a free port, or 0 for any"
    if exc.errno == errno.EACCES:
        return (
            f"{section}.port {port} on {host} is not open to this user: {set_port} "
            "to 1024 or above, or 0 for any"
        )
    if isinstance(exc, socket.gaierror):
        return f"{section}.host {host} does not resolve ({exc.strerror}): {set_host} to 127.0.0.1"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{section}.host {host} is not an address of this machine: {set_host} to 127.0.0.1, "
            "0.0.0.0 (all addresses) or one of its own"
        )
    return f"cannot listen on {section}.host {host}, {section}.port {port}: {exc.strerror or exc}"


class HealthServer:
    """/metrics, /healthz and /readyz on ``metrics.host:metrics.port``, in a thread of its own.

    Binds at construction, so a port in use fails the command before anything else starts.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        self._server = listen(host, port, _handler(registry, health), "metrics")
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="health",
            daemon=True,
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
