"""Workers under test: ``detector run`` processes in one consumer group, as in production.

Each gets its own metrics port and a config file holding every setting, so the child
reads nothing from the environment that could point it at other services.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import yaml

from detector.config import ENV_PREFIX, Settings
from detector.embedded import free_port
from detector.errors import BenchError
from detector_lab.bench.scrape import Scrape, fetch

STOP_TIMEOUT_S = 30.0
SETTINGS_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment less the variables that override settings: the config file rules.

    >>> child_environment({"PATH": "/bin", "REDIS_URL": "redis://x", "DETECTOR__KAFKA__GROUP_ID": "g"})
    {'PATH': '/bin'}
    """
    return {
        k: v for k, v in environ.items() if k not in SETTINGS_ENV and not k.startswith(ENV_PREFIX)
    }


@dataclass
class _Worker:
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]


class Deployment:
    """``workers`` processes of ``detector run`` sharing ``settings`` (group, topics, Redis)."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        directory: Path,
        environ: Mapping[str, str],
        log_level: str = "warning",
    ) -> None:
        self.settings = settings
        self.count = workers
        self.directory = directory
        self._environ = child_environment(environ)
        self._log_level = log_level
        self._workers: list[_Worker] = []

    def start(self) -> Deployment:
        self.directory.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            port = free_port()
            settings = self.settings.with_overrides(metrics={"port": port, "host": "127.0.0.1"})
            config = self.directory / f"worker-{i}.yaml"
            # It may hold a Redis password (in redis.url): owner-only, and removed at stop.
            config.touch(mode=0o600)
            config.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
            log = self.directory / f"worker-{i}.log"
            log_file = log.open("ab")
            command = [sys.executable, "-m", "detector.cli", "--log-level", self._log_level]
            proc = subprocess.Popen(
                [*command, "run", "--config", str(config)],
                env=self._environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            self._workers.append(_Worker(port, config, log, proc, log_file))
        return self

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def scrape(self) -> list[Scrape | None]:
        return [fetch(w.port) for w in self._workers]

    def rss_bytes(self) -> list[int]:
        out = []
        for w in self._workers:
            try:
                out.append(int(psutil.Process(w.proc.pid).memory_info().rss))
            except psutil.Error:
                out.append(0)
        return out

    def check_alive(self) -> None:
        for i, w in enumerate(self._workers):
            code = w.proc.poll()
            if code is not None:
                raise BenchError(f"worker {i} exited with code {code}; its log: {w.log}")

    def stop(self) -> None:
        for w in self._workers:
            if w.proc.poll() is None:
                w.proc.terminate()
        for w in self._workers:
            try:
                w.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.log_file.close()
            w.config.unlink(missing_ok=True)
        self._workers = []

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
