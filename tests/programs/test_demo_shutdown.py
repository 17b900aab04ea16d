"""Ctrl-C on ``detector demo`` stops it cleanly: the real command in a child process, its real
embedded broker and Redis, and SIGINT sent the way a terminal sends it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.integration

STARTED_WITHIN_S = 60.0
STOPPED_WITHIN_S = 20.0
# A log line of one of kafka-python's loggers (all named kafka.*), in the CLI's log format.
LIBRARY_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ kafka[.:]")


def _read_until(stream: object, marker: str, timeout_s: float) -> str:
    """Lines of ``stream`` up to the one holding ``marker`` (read in a thread: bounded wait)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            seen.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s), f"no {marker!r} within {timeout_s:.0f} s: {''.join(seen)}"
    return "".join(seen)


def _answers(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("to", ["process group", "process"])
def test_ctrl_c_stops_the_demo_cleanly(to: str) -> None:
    # regression: a terminal's Ctrl-C reached the embedded broker too, which stopped under the
    # clients: dozens of kafka-python error lines
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR__")}
    env["DETECTOR__METRICS__PORT"] = "0"
    demo = subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "demo", "--duration", "120"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell gives a job
    )
    try:
        head = _read_until(demo.stdout, "Ctrl-C to stop", STARTED_WITHIN_S)
        servers = re.findall(r"127\.0\.0\.1:\d+", head.split("service running")[0])
        assert len(servers) == 2, head  # the broker's and Redis's addresses
        time.sleep(3.0)  # traffic, the worker and the alert reader all busy
        if to == "process group":  # what a terminal does: every process of the job
            os.killpg(demo.pid, signal.SIGINT)
        else:
            demo.send_signal(signal.SIGINT)
        asked = time.monotonic()
        rest, stderr = demo.communicate(timeout=STOPPED_WITHIN_S)
        took_s = time.monotonic() - asked
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 0, stderr
    assert took_s < STOPPED_WITHIN_S
    assert "Stopped." in rest
    assert "Traceback" not in stderr
    noise = [line for line in stderr.splitlines() if LIBRARY_LINE.match(line) or " ERROR " in line]
    assert not noise, stderr
    # The broker and Redis were stopped too, after their clients.
    assert not [s for s in servers if _answers(s)]
