"""``detector demo`` runs the main job end to end and shows the abusive account only."""

from __future__ import annotations

import io
import re
import threading

import pytest
from rich.console import Console

from detector.config import Settings
from detector.programs.demo import run_demo
from detector_lab.sim.basic import BasicTraffic

pytestmark = pytest.mark.integration


def test_demo_prints_alerts_for_the_abusive_account_only() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    seen = run_demo(
        Settings().with_overrides(metrics={"port": 0}), 25.0, console, threading.Event()
    )
    text = out.getvalue()
    assert seen >= 1
    alerted = set(re.findall(r"account (\S+)\s+score", text))
    assert alerted == {BasicTraffic().abusive_account}
    assert "volume_spike" in text and "Stopped." in text
