"""Evaluation suites: scenario families with parameter ranges and adversary variants (issue 29).

A suite file (``config/suites/<name>.yaml``) holds families, not scenarios: every honest
population and every campaign kind with its parameters as ranges, and the adversary
variants, each a set of knob values that defeats one signal. ``draw(suite, k)`` turns
it into one concrete ``Scenario``, the same for the same (suite, k) on any machine:

1. seed ``seed_base + k``: the draw's parameters and then (``simulate``) its traffic;
2. the length of the run and the new model's release hour from the suite's ranges;
3. every honest family once, each parameter drawn from its range;
4. ``campaigns_per_draw`` campaign slots dealt from the suite's plan (``plan``): every
   campaign family once as it is, every variant alone and every listed pair of variants,
   each on a family that allows it. Draws ``0 .. covering_draws(suite) - 1`` hold the whole
   plan, so they show every family and every variant; later draws deal it again in
   another order.

``tune`` and ``test`` suites differ in their seeds, their phrase half (``Scenario.half``,
passed to every text call) and every numeric parameter range (``parameter_intervals``).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from typing_extensions import TypeAliasType

from detector.errors import ConfigError
from detector_lab.sim.scenario import (
    Campaign,
    Half,
    Population,
    Scenario,
    problems,
    yaml_path,
)

SUITE_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "suites"
OLD_MODEL_RELEASE_H = -4000.0  # the established model: released long before any draw starts


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Range(_Model):
    """A closed interval; a draw is uniform in it, and an integer when both ends are."""

    range: tuple[int, int] | tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.range[0] > self.range[1]:
            raise ValueError(f"range {list(self.range)} runs backwards")
        return self


class Choice(_Model):
    """One of the listed values (each may itself be a range or a choice)."""

    choice: tuple[Param, ...] = Field(min_length=1)


# A parameter: a range, a choice, a literal, or a tuple of parameters (e.g. time zones).
Param = TypeAliasType(
    "Param", "Range | Choice | bool | int | float | str | tuple[Param, ...] | None"
)
Choice.model_rebuild()


class Family(_Model):
    family: str
    kind: str
    params: dict[str, Param] = Field(default_factory=dict)
    variants: tuple[str, ...] = Field(
        default=(), description="campaigns: the variants this family can be drawn with"
    )


class Slot(_Model):
    """One campaign of a draw: a family and the variants applied to it."""

    family: str
    variants: tuple[str, ...] = ()


class Suite(_Model):
    name: str
    half: Half
    seed_base: int = Field(ge=0, description="draw k has seed seed_base + k")
    draws: int = Field(ge=1, description="draws of a full report (eval --suite default)")
    scale: float = Field(default=1.0, gt=0, description="multiplies every group's accounts")
    start: datetime
    days: tuple[float, float]
    release_h: tuple[float, float] = Field(description="hours after start the new model ships")
    model: str = Field(description="the established model")
    new_model: str
    campaigns_per_draw: int = Field(ge=1)
    honest: tuple[Family, ...] = Field(min_length=1)
    campaigns: tuple[Family, ...] = Field(min_length=1)
    variants: dict[str, dict[str, Param]] = Field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] = Field(
        default=(), description="variant combinations each drawn once per pass"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        names = [f.family for f in self.honest + self.campaigns]
        if dupes := sorted(n for n, k in Counter(names).items() if k > 1):
            raise ValueError(f"family names must be unique: {dupes}")
        for lo, hi, what in (*self.days, "days"), (*self.release_h, "release_h"):
            if not 0 <= lo <= hi:
                raise ValueError(f"{what}: [{lo}, {hi}] must be an ordered, non-negative range")
        if self.days[0] <= 0:
            raise ValueError("days: a draw must last longer than 0 days")
        for family in self.campaigns:
            if unknown := sorted(set(family.variants) - set(self.variants)):
                raise ValueError(f"campaigns.{family.family}.variants: unknown {unknown}")
        for combo in [(v,) for v in self.variants] + list(self.pairs):
            if not _able(self, combo):
                raise ValueError(f"variants {list(combo)}: no campaign family allows them all")
        return self

    def family(self, name: str) -> Family:
        return next(f for f in self.honest + self.campaigns if f.family == name)


def _able(suite: Suite, combo: tuple[str, ...]) -> list[str]:
    return [f.family for f in suite.campaigns if set(combo) <= set(f.variants)]


def plan(suite: Suite, cycle: int = 0) -> tuple[Slot, ...]:
    """Pass ``cycle`` over the suite's campaigns: every family without a variant, then every
    variant alone and every pair, each on the family allowing it that is least used so far.
    Each pass breaks ties its own way, so over several passes a variant meets several
    families and its effect can be told from theirs."""
    rng = random.Random(f"plan:{suite.seed_base}" + (f":{cycle}" if cycle else ""))
    slots = [Slot(family=f.family) for f in suite.campaigns]
    used = Counter(s.family for s in slots)
    for combo in [(v,) for v in suite.variants] + list(suite.pairs):
        able = _able(suite, combo)
        rng.shuffle(able)
        family = min(able, key=used.__getitem__)
        used[family] += 1
        slots.append(Slot(family=family, variants=combo))
    return tuple(slots)


def covering_draws(suite: Suite) -> int:
    """Draws 0 .. this - 1 hold every slot of the plan: every family and every variant."""
    return math.ceil(len(plan(suite)) / suite.campaigns_per_draw)


def slots(suite: Suite, index: int) -> tuple[Slot, ...]:
    """Draw ``index``'s campaigns: the plan dealt ``campaigns_per_draw`` at a time, each
    pass through it in an order of its own."""
    size = len(plan(suite))
    dealt = []
    for position in range(index * suite.campaigns_per_draw, (index + 1) * suite.campaigns_per_draw):
        cycle, at = divmod(position, size)
        order = list(plan(suite, cycle))
        random.Random(f"deal:{suite.seed_base}:{cycle}").shuffle(order)
        dealt.append(order[at])
    return tuple(dealt)


def _value(rng: random.Random, param: Any, corner: int | None = None) -> Any:
    """A concrete value of ``param``; ``corner`` 0 or -1 takes every range's and choice's
    first or last end instead (load_suite validates both)."""
    if isinstance(param, Range):
        lo, hi = param.range
        if corner is not None:
            return param.range[corner]
        if isinstance(lo, int) and isinstance(hi, int):
            return rng.randint(lo, hi)
        return round(rng.uniform(lo, hi), 3)
    if isinstance(param, Choice):
        picked = param.choice[corner] if corner is not None else rng.choice(param.choice)
        return _value(rng, picked, corner)
    if isinstance(param, tuple):
        return tuple(_value(rng, p, corner) for p in param)
    return param


def _variant(
    rng: random.Random, name: str, params: dict[str, Any], corner: int | None
) -> tuple[dict[str, Any], str]:
    """A variant's knob values and its label: the name, plus each word it chose
    (``language:zh``)."""
    values, label = {}, name
    for key, param in params.items():
        values[key] = _value(rng, param, corner)
        if isinstance(param, Choice) and isinstance(values[key], str):
            label += f":{values[key]}"
    return values, label


def _group(
    rng: random.Random,
    family: Family,
    name: str,
    variants: tuple[str, ...],
    suite: Suite,
    corner: int | None = None,
) -> dict[str, Any]:
    group: dict[str, Any] = {"name": name, "kind": family.kind, "family": family.family}
    group.update({k: _value(rng, p, corner) for k, p in family.params.items()})
    labels = []
    for variant in variants:
        values, label = _variant(rng, variant, suite.variants[variant], corner)
        group.update(values)
        labels.append(label)
    group["variant"] = "+".join(labels) or "none"
    return group


def draw(suite: Suite, index: int, scale: float = 1.0) -> Scenario:
    """The suite's draw ``index`` (0, 1, ...): a concrete scenario, deterministic per
    (suite, index); ``scale`` multiplies every group's accounts on top of the suite's."""
    if index < 0:
        raise ConfigError(f"draw index must be 0 or more, not {index}")
    seed = suite.seed_base + index
    rng = random.Random(seed)
    days = round(rng.uniform(*suite.days), 3)
    release_h = round(rng.uniform(*suite.release_h), 2)
    scenario = Scenario.model_validate(
        {
            "name": f"{suite.name}-{index:03d}",
            "seed": seed,
            "start": suite.start,
            "days": days,
            "models": [
                {"name": suite.model, "released_at_h": OLD_MODEL_RELEASE_H},
                {"name": suite.new_model, "released_at_h": release_h},
            ],
            "populations": [_group(rng, f, f.family, (), suite) for f in suite.honest],
            "campaigns": [
                _group(rng, suite.family(s.family), f"{s.family}_{j}", s.variants, suite)
                for j, s in enumerate(slots(suite, index))
            ],
            "half": suite.half,
            "account_ids": "opaque",
        }
    )
    factor = suite.scale * scale
    return scenario.scaled(factor) if factor != 1.0 else scenario


def parameter_intervals(suite: Suite) -> dict[str, list[tuple[float, float]]]:
    """Every numeric value a draw can take, as closed intervals per parameter: keys are
    ``days``, ``release_h``, ``<family>.<param>`` and ``variant.<name>.<param>``. A tune and
    a test suite must not overlap on any key they share."""
    out: dict[str, list[tuple[float, float]]] = {
        "days": [suite.days],
        "release_h": [suite.release_h],
    }
    sections = [(f.family, f.params) for f in suite.honest + suite.campaigns]
    sections += [(f"variant.{name}", params) for name, params in suite.variants.items()]
    for prefix, params in sections:
        for key, param in params.items():
            if intervals := list(_intervals(param)):
                out[f"{prefix}.{key}"] = intervals
    return out


def _intervals(param: Any) -> Any:
    if isinstance(param, Range):
        yield param.range
    elif isinstance(param, Choice | tuple):
        for item in param.choice if isinstance(param, Choice) else param:
            yield from _intervals(item)
    elif isinstance(param, int | float) and not isinstance(param, bool):
        yield (param, param)


_POPULATION: TypeAdapter[Any] = TypeAdapter(Population)
_CAMPAIGN: TypeAdapter[Any] = TypeAdapter(Campaign)


def _check_families(suite: Suite) -> None:
    """Draw every family, alone and with every variant and pair it allows, at both ends of
    every range and with a few random draws, and validate it as its kind."""
    cases: list[tuple[Family, TypeAdapter[Any], tuple[str, ...]]]
    cases = [(f, _POPULATION, ()) for f in suite.honest]
    for f in suite.campaigns:
        combos = [(), *((v,) for v in f.variants)]
        combos += [p for p in suite.pairs if set(p) <= set(f.variants)]
        cases += [(f, _CAMPAIGN, combo) for combo in combos]
    for family, adapter, combo in cases:
        for corner in (0, -1, None, None, None):
            group = _group(random.Random(corner), family, family.family, combo, suite, corner)
            try:
                adapter.validate_python(group)
            except ValidationError as exc:
                where = family.family + "".join(f" + variant {v}" for v in combo)
                raise ConfigError(f"{where}: {problems(exc)}") from None


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The suite's YAML; ``extends: <suite>`` starts from that suite's keys, and top-level
    ``x-...`` keys (somewhere to define YAML anchors) are dropped."""
    if path in seen:
        raise ConfigError(f"suite {path} extends itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"suite {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"suite {path} must be a mapping of settings")
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}  # YAML anchors' home
    base = data.pop("extends", None)
    if base is None:
        return data
    return {**_read(_suite_path(str(base), path.parent), (*seen, path)), **data}


def _suite_path(name_or_path: str, directory: Path = SUITE_DIR) -> Path:
    return yaml_path(name_or_path, directory, "suite")


def load_suite(name_or_path: str) -> Suite:
    """``config/suites/<name>.yaml`` or a path; ConfigError naming the field on bad input."""
    path = _suite_path(name_or_path)
    data = _read(path)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid suite {path}: {problems(exc)}") from None
    try:
        _check_families(suite)
    except ConfigError as exc:
        raise ConfigError(f"invalid suite {path}: {exc}") from None
    return suite
