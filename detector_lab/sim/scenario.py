"""Scenario files (YAML in ``config/scenarios/``): models, networks, honest populations and campaigns.

Every rate and size is a parameter here, so a scenario is data, not code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from detector.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "scenarios"
Capability = Literal["reasoning", "rubric", "censorship_rewrite", "agentic_coding", "tool_use"]
Half = Literal["tune", "test"]
Language = Literal["en", "zh", "ru", "es"]
# What honest requests are about (text.honest_request) and system prompts' workloads.
HonestKind = Literal[
    "benchmark_reasoning",
    "tutoring",
    "red_team",
    "translation",
    "essay_grading",
    "coding_agent",
    "chat",
]
Workload = Literal[
    "general",
    "coding_assistant",
    "essay_grading",
    "coding_agent_client",
    "tutoring",
    "red_team",
    "translation",
]
AppWorkload = Literal[
    "general", "coding_assistant", "essay_grading", "tutoring", "red_team", "translation"
]
Sampling = Literal["varied", "fixed"]  # fixed: an account keeps one temperature and max_tokens


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelRelease(_Model):
    name: str
    released_at_h: float = Field(description="hours after the scenario start; negative: before it")


class _Group(_Model):
    name: str
    accounts: int = Field(ge=1)
    family: str = Field(
        default="", description="the suite family the group was drawn from; default: its kind"
    )
    variant: str = Field(
        default="none", description="adversary variants applied, e.g. 'language:zh+human_pacing'"
    )

    @model_validator(mode="before")
    @classmethod
    def _family_defaults_to_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("family"):
            return {**data, "family": data.get("kind", "")}
        return data


class _Honest(_Group):
    """Knobs every honest population shares: what its people write, and in which languages."""

    languages: tuple[Language, ...] = Field(
        default=("en",), min_length=1, description="drawn per account (per request for apps)"
    )
    request_kind: HonestKind | None = Field(
        default=None,
        description="text.honest_request kind of the requests; None: the original prompts "
        "of the default scenario (English, no phrase half)",
    )


class Individuals(_Honest):
    kind: Literal["individual"]
    daily_requests: float = Field(
        default=12.0, gt=0, description="median per account per active day"
    )
    daily_sigma: float = Field(default=1.0, ge=0, description="lognormal spread of that volume")
    chat_turns: float = Field(default=3.0, ge=1, description="mean requests per chat session")
    max_turns: int = Field(default=12, ge=1)
    turn_gap_s: tuple[float, float] = Field(
        default=(20.0, 240.0), description="seconds between the turns of a session"
    )
    timezones_h: tuple[float, ...] = (-8, -5, 0, 1, 5.5, 8, 9)
    new_model_share: float = Field(
        default=0.0, ge=0, le=1, description="traffic moved to the newest model after release"
    )
    release_joiners: float = Field(
        default=0.0, ge=0, le=1, description="share of accounts created on release day to try it"
    )
    release_boost: float = Field(
        default=1.0, ge=1, description="activity multiplier in the 24 hours after a release"
    )
    network: Literal["residential", "reseller", "nat", "mobile"] = Field(
        default="residential",
        description="nat: a corporate or university network, every account behind "
        "egress_addresses addresses",
    )
    egress_addresses: int = Field(default=3, ge=1)
    shared_client: str | None = Field(
        default=None,
        description="user agent of one open-source client every account runs (same long system "
        "prompt and fingerprint): its sessions are streamed, tool-heavy agent loops",
    )
    stream_share: float = Field(default=0.8, ge=0, le=1)
    tool_share: float = Field(default=0.0, ge=0, le=1)
    sampling: Sampling = "varied"
    sources: tuple[str, ...] = Field(
        default=(),
        description="text.HONEST_SOURCES the first messages come from, one per session; "
        "(): the CPython docs (in another language, also everyday requests)",
    )


class AppBackends(_Honest):
    kind: Literal["app_backend"]
    hourly_requests: float = Field(default=40.0, gt=0)
    tool_share: float = Field(default=0.3, ge=0, le=1)
    workload: AppWorkload = Field(
        default="general",
        description="general chat; an IDE coding assistant (agentic coding, tools, streamed, "
        "multi-turn); an ed-tech product grading essays against rubrics; a tutoring app whose "
        "system prompt asks to explain reasoning; a translation service; a red-team harness. "
        "All but the first are honest look-alikes of capability harvesting.",
    )
    network: Literal["cloud", "hosting"] = Field(
        default="cloud", description="hosting: the ranges campaigns rent their servers in"
    )
    timezones_h: tuple[float, ...] = (-5, 1, 8)
    stream_share: float | None = Field(
        default=None, ge=0, le=1, description="None: 0.9 for an IDE assistant, else 0"
    )
    sampling: Sampling = "varied"


class EnterpriseBatch(_Group):
    kind: Literal["enterprise_batch"]
    accounts_per_org: int = Field(default=4, ge=1)
    hourly_requests: float = Field(default=300.0, gt=0, description="while a job runs")
    job_hours: float = Field(default=6.0, gt=0, description="length of the daily batch window")
    templates: tuple[str, ...] = Field(
        default=(
            "Classify the following customer message into one of: billing, bug, feature, other. "
            "Ticket {n}. Message: {t}",
            "Extract the product, sentiment and urgency from this review as JSON. Review {n}: {t}",
            "Summarise this internal document section in two sentences for the weekly digest: {t}",
        ),
        min_length=1,
        description="one per org, in turn; {t}: real text, {n}: an item number",
    )
    user_agent: str = "acme-batch/4.1 python-httpx/0.27"


class BenchmarkRuns(_Honest):
    kind: Literal["benchmark"]
    prompts: tuple[int, int] = (500, 3000)
    duration_h: float = Field(default=3.0, gt=0)
    user_agent: str = "lm-eval-harness/0.4 openai-python/1.40.0"


class _Campaign(_Group):
    """Knobs every campaign kind shares: the adversary variants.

    Each knob defeats one signal; at its default it changes nothing and draws nothing from
    the random stream, so scenarios written before the knobs existed generate the same
    traffic. "native" means the kind's own behaviour.
    """

    capabilities: tuple[Capability, ...]
    language: Language = "en"
    paraphrase: bool = Field(default=False, description="reworded templates, not near-copies")
    one_template: bool = Field(
        default=False, description="every request fills one template (near-identical prompts)"
    )
    system_prompt: Workload | None = Field(
        default=None, description="one system prompt of this workload shared by every account"
    )
    pacing: Literal["native", "human"] = Field(
        default="native",
        description="human: each account keeps office hours in the operator's time zone, in "
        "multi-request sessions with think time, and takes days off",
    )
    timezone_h: float = Field(default=8.0, description="the operator's time zone")
    days_off: float = Field(default=0.15, ge=0, lt=1, description="human pacing: idle days")
    session_turns: float = Field(default=4.0, ge=1, description="human pacing: mean per session")
    sessions: Literal["single", "agentic"] = Field(
        default="single", description="agentic: streamed multi-turn tool loops"
    )
    agentic_turns: float = Field(default=8.0, ge=1, description="mean requests per agent loop")
    params: Literal["fixed", "random"] = Field(
        default="fixed", description="random: temperature, max_tokens and stream vary per request"
    )
    clients: Literal["native", "rotated"] = Field(
        default="native", description="rotated: a new user agent and fingerprint per session"
    )
    proxy: Literal["native", "residential", "mobile"] = Field(
        default="native", description="exit addresses per session from these networks"
    )
    pool: Literal["none", "reseller"] = Field(
        default="none",
        description="reseller: sent through the reseller honest customers use (its egress, "
        "its user agent, a fingerprint per account)",
    )
    payment: Literal["native", "shared", "per_account"] = "native"
    ramp_h: float = Field(
        default=0.0, ge=0, description="hours for an account to grow from 10% to full volume"
    )
    rate_factor: float = Field(
        default=1.0, gt=0, description="multiplies each account's rate (many accounts, thin)"
    )
    new_model_share: float = Field(
        default=0.0, ge=0, le=1, description="traffic moved to the newest model after release"
    )
    pivot_delay_h: float = Field(
        default=3.0, ge=0, description="hours after the release until the move"
    )


class LockstepCampaign(_Campaign):
    kind: Literal["lockstep"]
    capabilities: tuple[Capability, ...] = ("reasoning", "rubric")
    hourly_requests: float = Field(default=120.0, gt=0, description="per account")
    start_h: float = 12.0
    duration_h: float = 48.0
    jitter_s: float = Field(default=2.0, ge=0, description="spread of one synchronised tick")
    billing_fingerprints: int = Field(default=3, ge=1)


class LowAndSlowCampaign(_Campaign):
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


class HydraCampaign(_Campaign):
    kind: Literal["hydra"]
    capabilities: tuple[Capability, ...] = ("reasoning", "agentic_coding")
    hourly_requests: float = Field(default=40.0, gt=0, description="per live account")
    lifetime_h: float = Field(default=24.0, gt=0, description="an account is replaced after this")
    replace_after_s: float = Field(
        default=0.0, ge=0, description="mean seconds from a ban to the replacement's first use"
    )
    new_model_share: float = Field(default=0.5, ge=0, le=1)


class ResidentialMimicCampaign(_Campaign):
    """Our own invention: harvesting dressed as individual users.

    Residential proxy addresses, a diurnal rhythm in one time zone and multi-turn
    sessions, but agentic-coding and tool-use templates from one SDK fingerprint.
    """

    kind: Literal["residential_mimic"]
    capabilities: tuple[Capability, ...] = ("agentic_coding", "tool_use")
    daily_requests: float = Field(default=60.0, gt=0)


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
    half: Half | None = Field(
        default=None, description="phrase half of every text call (suites); None: all phrasings"
    )
    account_ids: Literal["named", "opaque"] = Field(
        default="named",
        description="opaque: account ids and fixed fingerprints are hashes, not group names",
    )

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


def yaml_path(name_or_path: str, directory: Path, what: str) -> Path:
    """``<directory>/<name>.yaml`` for a bare name, else the path; ConfigError listing the
    known names if there is no such file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = directory / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise ConfigError(f"no {what} {name_or_path!r}: give a YAML path or one of: {known}")
    return path


def load_scenario(name_or_path: str) -> Scenario:
    path = yaml_path(name_or_path, SCENARIO_DIR, "scenario")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"invalid scenario {path}: {problems(exc)}") from None


def problems(exc: ValidationError) -> str:
    """A validation error as ``field.path: message; ...``, for a ConfigError."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
