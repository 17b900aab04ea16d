"""Scenario files (YAML in ``config/scenarios/``): models, networks, honest populations and campaigns.

Every rate and size is a parameter here, so a scenario is data, not code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detector.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "scenarios"
Capability = Literal["reasoning", "rubric", "censorship_rewrite", "agentic_coding", "tool_use"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelRelease(_Model):
    name: str
    released_at_h: float = Field(description="hours after the scenario start; negative: before it")


class _Group(_Model):
    name: str
    accounts: int = Field(ge=1)


class Individuals(_Group):
    kind: Literal["individual"]
    daily_requests: float = Field(
        default=12.0, gt=0, description="median per account per active day"
    )
    daily_sigma: float = Field(default=1.0, ge=0, description="lognormal spread of that volume")
    chat_turns: float = Field(default=3.0, ge=1, description="mean requests per chat session")
    timezones_h: tuple[float, ...] = (-8, -5, 0, 1, 5.5, 8, 9)
    new_model_share: float = Field(
        default=0.0, ge=0, le=1, description="traffic moved to the newest model after release"
    )
    network: Literal["residential", "reseller"] = "residential"


class AppBackends(_Group):
    kind: Literal["app_backend"]
    hourly_requests: float = Field(default=40.0, gt=0)
    tool_share: float = Field(default=0.3, ge=0, le=1)
    workload: Literal["general", "coding_assistant", "essay_grading"] = Field(
        default="general",
        description="general chat; an IDE coding assistant (agentic coding, tools, streamed, "
        "multi-turn); an ed-tech product grading essays against rubrics. The last two are the "
        "honest look-alikes of capability harvesting.",
    )


class EnterpriseBatch(_Group):
    kind: Literal["enterprise_batch"]
    accounts_per_org: int = Field(default=4, ge=1)
    hourly_requests: float = Field(default=300.0, gt=0, description="while a job runs")
    job_hours: float = Field(default=6.0, gt=0, description="length of the daily batch window")


class BenchmarkRuns(_Group):
    kind: Literal["benchmark"]
    prompts: tuple[int, int] = (500, 3000)
    duration_h: float = Field(default=3.0, gt=0)


class LockstepCampaign(_Group):
    kind: Literal["lockstep"]
    capabilities: tuple[Capability, ...] = ("reasoning", "rubric")
    hourly_requests: float = Field(default=120.0, gt=0, description="per account")
    start_h: float = 12.0
    duration_h: float = 48.0
    jitter_s: float = Field(default=2.0, ge=0, description="spread of one synchronised tick")
    billing_fingerprints: int = Field(default=3, ge=1)


class LowAndSlowCampaign(_Group):
    kind: Literal["low_and_slow"]
    capabilities: tuple[Capability, ...] = (
        "reasoning",
        "rubric",
        "censorship_rewrite",
        "agentic_coding",
        "tool_use",
    )
    daily_requests: float = Field(
        default=30.0, gt=0, description="per account, kept under per-account thresholds"
    )
    client_fingerprints: int = Field(default=2, ge=1)


class HydraCampaign(_Group):
    kind: Literal["hydra"]
    capabilities: tuple[Capability, ...] = ("reasoning", "agentic_coding")
    hourly_requests: float = Field(default=40.0, gt=0, description="per live account")
    lifetime_h: float = Field(default=24.0, gt=0, description="an account is replaced after this")
    new_model_share: float = Field(default=0.5, ge=0, le=1)
    pivot_delay_h: float = Field(
        default=3.0, ge=0, description="hours after the release until the move"
    )


class ResidentialMimicCampaign(_Group):
    """Our own invention: harvesting dressed as individual users.

    Residential proxy addresses, a diurnal rhythm in one time zone and multi-turn
    sessions, but agentic-coding and tool-use templates from one SDK fingerprint.
    """

    kind: Literal["residential_mimic"]
    capabilities: tuple[Capability, ...] = ("agentic_coding", "tool_use")
    daily_requests: float = Field(default=60.0, gt=0)
    timezone_h: float = 8.0


Population = Annotated[
    Individuals | AppBackends | EnterpriseBatch | BenchmarkRuns,
    Field(discriminator="kind"),
]
Campaign = Annotated[
    LockstepCampaign | LowAndSlowCampaign | HydraCampaign | ResidentialMimicCampaign,
    Field(discriminator="kind"),
]


class Scenario(_Model):
    name: str
    seed: int = 42
    start: datetime
    days: float = Field(gt=0)
    models: tuple[ModelRelease, ...] = Field(min_length=1)
    populations: tuple[Population, ...] = ()
    campaigns: tuple[Campaign, ...] = ()

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def default_model(self) -> str:
        released = [m for m in self.models if m.released_at_h <= 0]
        return max(released or self.models, key=lambda m: m.released_at_h).name

    @property
    def newest(self) -> ModelRelease:
        return max(self.models, key=lambda m: m.released_at_h)

    def scaled(self, factor: float) -> Scenario:
        """The same scenario with every group's account count multiplied (at least 1)."""

        def scale(group: BaseModel) -> BaseModel:
            return group.model_copy(update={"accounts": max(1, round(group.accounts * factor))})  # type: ignore[attr-defined]

        return self.model_copy(
            update={
                "populations": tuple(scale(p) for p in self.populations),
                "campaigns": tuple(scale(c) for c in self.campaigns),
            }
        )


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise ConfigError(f"no scenario {name_or_path!r}: give a YAML path or one of: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid scenario {path}: {problems}") from None
