"""``detector eval --suite``: draw scenarios from a suite, replay and score each, then the matrix.

Every draw is simulated into a directory of its own and replayed through the real pipeline
with a fresh embedded Redis, so no state crosses from one draw to the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from detector import __version__
from detector.config import Settings
from detector.errors import ConfigError
from detector_lab.evaluation import matrix_report, report
from detector_lab.evaluation.cells import DrawScore, score_draw
from detector_lab.evaluation.matrix import Matrix, aggregate
from detector_lab.evaluation.run import replay_labelled, write_simulation
from detector_lab.sim.scenario import Scenario
from detector_lab.sim.suites import Suite, draw, load_suite

# (draw position from 1, draws, stage, done, total)
SuiteProgress = Callable[[int, int, str, int, int], None]


def open_suite(name_or_path: str) -> Suite:
    """The suite, or an error that names the flag (the loader lists the known suites)."""
    try:
        return load_suite(name_or_path)
    except ConfigError as exc:
        raise ConfigError(f"--suite: {exc}") from None


def suite_scenario(suite: Suite, index: int, scale: float) -> Scenario:
    if index < 0:
        raise ConfigError(f"--draw/--first must be 0 or more, not {index}")
    return draw(suite, index, scale)


def draw_meta(suite: Suite, index: int, scale: float) -> dict[str, Any]:
    """What labels.json records about where a draw came from (scale: the suite's times --scale)."""
    return {"suite": suite.name, "half": suite.half, "draw": index, "scale": suite.scale * scale}


@dataclass(frozen=True)
class SuiteOutput:
    matrix: Matrix
    scores: list[DrawScore]
    meta: dict[str, Any]
    out: Path


def check_draws(suite: Suite, draws: int | None, first: int, scale: float) -> int:
    """How many draws to run (None: the suite's own count), or an error naming the flag."""
    if draws is not None and draws < 1:
        raise ConfigError(f"--draws must be 1 or more, not {draws}")
    if first < 0:
        raise ConfigError(f"--draw/--first must be 0 or more, not {first}")
    if scale <= 0:
        raise ConfigError(f"--scale must be above 0, not {scale}")
    return suite.draws if draws is None else draws


def run_suite(
    settings: Settings,
    suite: Suite,
    draws: int,
    out: Path,
    data: Path | None = None,
    first: int = 0,
    scale: float = 1.0,
    progress: SuiteProgress | None = None,
) -> SuiteOutput:
    """Draws ``first`` .. ``first + draws - 1``: their data in ``data/draw-NNN/`` (default
    ``out``), the matrix report (report.md, report.json, heatmaps) in ``out``."""
    draws = check_draws(suite, draws, first, scale)
    data = data or out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scores = []
    for pos, index in enumerate(range(first, first + draws), start=1):

        def step(stage: str, done: int, total: int, pos: int = pos) -> None:
            if progress:
                progress(pos, draws, stage, done, total)

        scores.append(_run_draw(settings, suite, index, data / f"draw-{index:03d}", scale, step))

    if progress:
        progress(draws, draws, "report", 0, 1)
    matrix = aggregate(scores)
    meta = {
        "suite": suite.name,
        "half": suite.half,
        "draws": draws,
        "first": first,
        "seeds": [s.seed for s in scores],
        "scale": suite.scale * scale,  # the suite's own times --scale
        "events": sum(s.events for s in scores),
        "accounts": sum(s.accounts for s in scores),
        "detector_version": __version__,
        "seconds": round(time.perf_counter() - started, 1),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    pngs = matrix_report.plots(matrix, out)
    matrix_report.write_json(matrix, scores, meta, out / "report.json")
    (out / "report.md").write_text(
        matrix_report.markdown(matrix, scores, meta, pngs), encoding="utf-8"
    )
    return SuiteOutput(matrix, scores, meta, out)


def _run_draw(
    settings: Settings,
    suite: Suite,
    index: int,
    where: Path,
    scale: float,
    step: Callable[[str, int, int], None],
) -> DrawScore:
    """Simulate, replay and score one draw; its per-scenario report.json and score.json stay
    beside its events for a closer look (which spends the draw, if it is a test draw)."""
    started = time.perf_counter()
    step("simulate", 0, 1)
    scenario = suite_scenario(suite, index, scale)
    write_simulation(scenario, where, scale, extra_meta=draw_meta(suite, index, scale))
    r = replay_labelled(settings, where / "events.jsonl", where / "labels.json", where, step)
    score = score_draw(
        index,
        scenario.seed,
        r.alerts,
        r.labels,
        r.events.times,
        r.events.models,
        r.meta.get("newest_model"),
        r.evaluation,
        seconds=time.perf_counter() - started,
    )
    report.write_json(r.evaluation, r.meta, where / "report.json")
    (where / "score.json").write_bytes(orjson.dumps(asdict(score), option=orjson.OPT_INDENT_2))
    return score
