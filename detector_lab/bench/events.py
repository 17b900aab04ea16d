"""The bench's events: a scenario simulated at the scale that yields the number asked for,
cut to exactly that many (in event time), written once as JSONL and reused by later runs."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from detector import __version__
from detector.errors import BenchError
from detector_lab.evaluation.run import prepare_scenario
from detector_lab.sim.generate import simulate
from detector_lab.sim.scenario import Scenario

EVENTS_PER_SCALE_GUESS = 430_000  # the default scenario at scale 1: a first guess, then corrected
SCALE_MARGIN = 1.05
MAX_TRIES = 4

Status = Callable[[str], None]


@dataclass(frozen=True)
class BenchEvents:
    path: Path
    count: int
    accounts: int
    mean_bytes: float
    span_h: float
    scenario: str
    seed: int
    scale: float

    def describe(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def next_scale(scale: float, got: int, wanted: int) -> float:
    """The scale to try after ``scale`` gave ``got`` events (a little over, so one retry does).

    >>> round(next_scale(1.0, 50_000, 100_000), 3)
    2.1
    """
    return scale * wanted / max(1, got) * SCALE_MARGIN


def cache_name(scenario: Scenario, count: int) -> str:
    """Same scenario, seed, size, Python and detector version: same events (the simulator is
    deterministic per seed on a Python version)."""
    digest = hashlib.sha1(
        orjson.dumps(scenario.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        + f"{sys.version_info[:2]}{__version__}".encode()
    ).hexdigest()[:10]
    return f"events-{scenario.name}-n{count}-{digest}"


def prepare_events(
    scenario_name: str,
    seed: int | None,
    count: int,
    work_dir: Path,
    status: Status | None = None,
) -> BenchEvents:
    base = prepare_scenario(scenario_name, seed, 1.0)
    work_dir.mkdir(parents=True, exist_ok=True)
    name = cache_name(base, count)
    path, meta_path = work_dir / f"{name}.jsonl", work_dir / f"{name}.meta.json"
    if path.exists() and meta_path.exists():
        meta = orjson.loads(meta_path.read_bytes())
        return BenchEvents(path=path, **meta)
    scale = count / EVENTS_PER_SCALE_GUESS
    for _ in range(MAX_TRIES):
        if status:
            status(f"simulating scenario {base.name} at scale {scale:.3f}")
        events = simulate(base.scaled(scale) if scale != 1.0 else base).events
        if len(events) >= count:
            break
        scale = next_scale(scale, len(events), count)
    else:
        raise BenchError(
            f"scenario {base.name} gave only {len(events)} events after {MAX_TRIES} tries: "
            "ask for fewer with --events"
        )
    events = events[:count]  # already in event-time order
    lines = [orjson.dumps(e) for e in events]
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"\n".join(lines) + b"\n")
    tmp.replace(path)
    meta = {
        "count": len(events),
        "accounts": len({e["account_id"] for e in events}),
        "mean_bytes": round(sum(map(len, lines)) / max(1, len(lines)), 1),
        "span_h": round((events[-1]["ts"] - events[0]["ts"]) / 3600, 2) if events else 0.0,
        "scenario": base.name,
        "seed": base.seed,
        "scale": round(scale, 5),
    }
    meta_path.write_bytes(orjson.dumps(meta))
    return BenchEvents(path=path, **meta)
