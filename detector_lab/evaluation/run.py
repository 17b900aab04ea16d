"""``detector simulate`` and ``detector eval``: traffic to files, replay, scoring, report."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detector import __version__
from detector.app import replay
from detector.config import Settings
from detector.errors import InputFileError
from detector_lab.evaluation import report
from detector_lab.evaluation.scoring import Evaluation, evaluate, first_flags
from detector_lab.sim.generate import simulate
from detector_lab.sim.scenario import Scenario, load_scenario

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def write_simulation(
    scenario: Scenario,
    out: Path,
    scale: float,
    on_group: Callable[[str], None] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``events.jsonl`` and ``labels.json`` in ``out``; ``extra_meta`` (suite, draw) joins the meta."""
    out.mkdir(parents=True, exist_ok=True)
    traffic = simulate(scenario, on_group)
    with (out / "events.jsonl").open("wb") as fh:
        for event in traffic.events:
            fh.write(orjson.dumps(event) + b"\n")
    meta = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "scale": scale,
        "events": len(traffic.events),
        "accounts": len(traffic.labels),
        "start_ts": scenario.start_ts,
        "newest_model": scenario.newest.name,
        "newest_release_ts": scenario.start_ts + scenario.newest.released_at_h * 3600,
        **(extra_meta or {}),
    }
    (out / "labels.json").write_bytes(
        orjson.dumps(
            {"meta": meta, "accounts": traffic.labels},
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )
    )
    return meta


def prepare_scenario(name_or_path: str, seed: int | None, scale: float) -> Scenario:
    scenario = load_scenario(name_or_path)
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    return scenario.scaled(scale) if scale != 1.0 else scenario


@dataclass(frozen=True)
class EvalOutput:
    evaluation: Evaluation
    meta: dict[str, Any]
    out: Path


def _read_labels(path: Path) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read labels {path}: {exc}") from None
    if not isinstance(data, dict) or "accounts" not in data:
        raise InputFileError(f"labels {path} must be an object with an 'accounts' mapping")
    return data["accounts"], data.get("meta", {})


@dataclass(frozen=True)
class EventIndex:
    """What scoring needs from the events file: per account, sorted times and models used."""

    times: dict[str, list[float]]
    models: dict[str, set[str]]


def read_events(path: Path) -> EventIndex:
    times: dict[str, list[float]] = defaultdict(list)
    models: dict[str, set[str]] = defaultdict(set)
    with path.open("rb") as fh:
        for line in fh:
            try:
                e = orjson.loads(line)
                times[e["account_id"]].append(float(e["ts"]))
                models[e["account_id"]].add(str(e.get("model")))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # invalid lines are the replay's business (dead letters)
    for ts in times.values():
        ts.sort()
    return EventIndex(dict(times), dict(models))


@dataclass(frozen=True)
class Replayed:
    """One labelled traffic file after the replay: alerts beside the truth."""

    alerts: list[dict[str, Any]]
    labels: dict[str, dict[str, str]]
    meta: dict[str, Any]  # labels.json's meta plus the replay's numbers
    events: EventIndex
    evaluation: Evaluation


def replay_labelled(
    settings: Settings,
    events: Path,
    labels: Path,
    data: Path,
    progress: Progress | None = None,
) -> Replayed:
    """Replay ``events`` through the pipeline (a fresh embedded Redis: runs never share state),
    write ``data/alerts.jsonl`` and score the alerts against ``labels``."""
    account_labels, meta = _read_labels(labels)
    alerts_path = data / "alerts.jsonl"
    rep = replay(
        settings,
        events,
        alerts_path,
        progress=(lambda done, total: progress("replay", done, total)) if progress else None,
    )
    if progress:
        progress("score", 0, 1)
    alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines() if line]
    index = read_events(events)
    evaluation = evaluate(alerts, account_labels, index.times, meta.get("newest_release_ts"))
    meta = {
        **meta,
        "events": rep.events,
        "accounts": len(account_labels),
        "alerts": len(alerts),
        "detector_version": __version__,
        "replay_events_per_s": round(rep.events_per_s, 1),
        "replay_seconds": round(rep.seconds, 2),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return Replayed(alerts, account_labels, meta, index, evaluation)


def run_evaluation(
    settings: Settings,
    out: Path,
    scenario: Scenario | None = None,
    data: Path | None = None,
    events: Path | None = None,
    labels: Path | None = None,
    scale: float = 1.0,
    progress: Progress | None = None,
) -> EvalOutput:
    """Report files go to ``out``; simulated events, labels and alerts to ``data`` (default ``out``)."""
    data = data or out
    out.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    if scenario is not None:
        if progress:
            progress("simulate", 0, 1)
        write_simulation(scenario, data, scale)
        events, labels = data / "events.jsonl", data / "labels.json"
    assert events is not None and labels is not None
    r = replay_labelled(settings, events, labels, data, progress)

    delays: dict[str, list[float]] = defaultdict(list)
    for account, ts in first_flags(r.alerts).items():
        info = r.labels.get(account)
        times = r.events.times.get(account)
        if info and info["label"] == "malicious" and times:
            delays[info["group"]].append(ts - times[0])

    start_ts = r.meta.get("start_ts") or min(
        (t[0] for t in r.events.times.values() if t), default=0.0
    )
    if progress:
        progress("report", 0, 1)
    pngs = report.plots(r.evaluation, r.alerts, dict(delays), start_ts, out)
    report.write_json(r.evaluation, r.meta, out / "report.json")
    (out / "report.md").write_text(report.markdown(r.evaluation, r.meta, pngs), encoding="utf-8")
    return EvalOutput(r.evaluation, r.meta, out)
