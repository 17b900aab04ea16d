"""Settings: frozen, validated, loaded once at the composition root and passed in.

Order of precedence (last wins): defaults in this module (mirrored, with docs, in
``config/default.yaml``), a ``--config`` YAML overlay, then the environment:
``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``DETECTOR__<SECTION>__<KEY>``
(for example ``DETECTOR__KAFKA__POLL_MAX_RECORDS=2000``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from redis.connection import parse_url

from detector.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
ENV_PREFIX = "DETECTOR__"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "localhost:9092"
    bootstrap_timeout_ms: int = Field(default=15000, ge=100)
    input_topic: str = "llm.queries"
    alerts_topic: str = "llm.alerts"
    dlq_topic: str = "llm.queries.dlq"
    group_id: str = "detector"
    client_id: str = "detector"
    create_topics: bool = True
    topic_partitions: int = Field(default=4, ge=1)
    poll_max_records: int = Field(default=1000, ge=1)
    poll_timeout_ms: int = Field(default=500, ge=1)
    fetch_max_wait_ms: int = Field(default=50, ge=0)
    receive_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    max_poll_interval_ms: int = Field(default=60000, ge=1000)
    auto_offset_reset: str = Field(default="earliest", pattern="^(earliest|latest)$")
    security_protocol: str = Field(
        default="PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$"
    )
    sasl_mechanism: str = Field(
        default="SCRAM-SHA-512", pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$"
    )
    sasl_username: str = ""
    sasl_password_env: str = "KAFKA_SASL_PASSWORD"
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        parse_bootstrap_servers(value)
        return value

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be lower than session_timeout_ms")
        return self


_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-_]*)://")
_HOST = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?$")
_BOOTSTRAP_FORM = "host:port[,host:port...] (e.g. kafka-1:9092,kafka-2:9092; IPv6 as [::1]:9092)"


def parse_bootstrap_servers(value: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a comma-separated list; ValueError naming the entry and the form.

    kafka-python would read ``http://broker`` as ``broker:9092`` (it drops any scheme and
    defaults the port), so a typo would reach a broker nobody meant; here it is refused.
    """
    entries = value.split(",")
    pairs = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            where = "is empty" if len(entries) == 1 else "has an empty entry"
            raise ValueError(f"{value!r} {where}: expected {_BOOTSTRAP_FORM}")
        if scheme := _SCHEME.match(entry):
            raise ValueError(
                f"{entry!r} has a scheme ({scheme[1]}://): expected {_BOOTSTRAP_FORM}; "
                "the protocol is kafka.security_protocol"
            )
        if entry.startswith("["):  # an IPv6 literal: [addr]:port
            host, bracket, port = entry[1:].partition("]")
            if not bracket or not port.startswith(":") or not host:
                raise ValueError(
                    f"{entry!r} is not [ipv6-address]:port: expected {_BOOTSTRAP_FORM}"
                )
            port = port[1:]
        else:
            host, colon, port = entry.rpartition(":")
            if not colon:
                raise ValueError(f"{entry!r} has no port: expected {_BOOTSTRAP_FORM}")
            if ":" in host:
                raise ValueError(
                    f"{entry!r}: an IPv6 address goes in brackets, e.g. [::1]:9092; "
                    f"expected {_BOOTSTRAP_FORM}"
                )
            if not _HOST.match(host):
                raise ValueError(
                    f"{entry!r}: {host!r} is not a host name or address: expected {_BOOTSTRAP_FORM}"
                )
        if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"{entry!r}: port {port!r} is not a number from 1 to 65535: expected {_BOOTSTRAP_FORM}"
            )
        pairs.append((host, int(port)))
    return pairs


class RedisSettings(_Section):
    url: str = "redis://localhost:6379/0"
    cluster: bool = False
    key_prefix: str = "det:"
    socket_timeout_s: float = Field(default=5.0, gt=0)
    retry_attempts: int = Field(default=0, ge=0)
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""

    @field_validator("url")
    @classmethod
    def _parsable_url(cls, url: str) -> str:
        try:
            parse_url(url)
        except ValueError as exc:
            # redis-py's message never holds the password; the URL is shown redacted.
            raise ValueError(f"{redact_url(url)} is not a Redis URL: {exc}") from None
        return url

    @model_validator(mode="after")
    def _cluster_url(self) -> RedisSettings:
        # Refused here rather than by redis-py at the first connection, naming both settings.
        options = parse_url(self.url) if self.cluster else {}
        if "path" in options:
            raise ValueError(
                "redis.url must be redis:// or rediss:// when redis.cluster is true: "
                "a cluster is reached over TCP"
            )
        if options.get("db", 0) != 0:
            raise ValueError(
                "redis.url must name database 0 or none when redis.cluster is true: "
                "a cluster has database 0 only"
            )
        return self


class StateSettings(_Section):
    windows_s: tuple[int, ...] = (60, 3600, 86400)
    rate_half_life_s: float = Field(default=3600.0, gt=0)
    ttl_s: int = Field(default=7 * 86400, ge=60)
    lateness_s: float = Field(default=300.0, ge=0)
    dedup_recent_ids: int = Field(default=32, ge=0, le=256)
    profile_events: int = Field(default=50, ge=2)
    near_duplicate_bits: int = Field(default=20, ge=0, le=32)
    recent_templates: int = Field(default=8, ge=1, le=32)
    cache_accounts: int = Field(default=10_000, ge=0)

    @model_validator(mode="after")
    def _windows_sorted(self) -> StateSettings:
        if not self.windows_s or list(self.windows_s) != sorted(set(self.windows_s)):
            raise ValueError("windows_s must be a non-empty increasing list of seconds")
        if 3600 not in self.windows_s:
            raise ValueError("windows_s must contain 3600 (the hourly window the rules use)")
        return self


class FeatureSettings(_Section):
    prompt_max_bytes: int = Field(default=65536, ge=0)
    max_future_s: float = Field(default=86400.0, ge=0)


# Transparent starting points; each list is OR-ed, matched case-insensitively.
DEFAULT_INTENT_PATTERNS: dict[str, tuple[str, ...]] = {
    "reasoning": (
        r"internal reasoning",
        r"hidden reasoning",
        r"chain[- ]of[- ]thought",
        r"articulate (?:the|your) (?:complete |full |entire )?(?:internal )?reasoning",
        r"(?:show|reveal|write out|output) (?:all (?:of )?)?(?:your|the) (?:full |complete |entire )?(?:reasoning|thought process|thinking)",
    ),
    "stepwise": (r"step[- ]by[- ]step", r"think (?:it )?through"),
    "rubric": (r"\brubric\b", r"\bgrader?\b", r"score the (?:answer|response)", r"per-criterion"),
    "rewrite": (
        r"(?:rewrite|rephrase) .{0,80}(?:safe|safely|policy|compliant|without refusing|neutral)",
        r"censorship",
    ),
    "coding": (
        r"coding agent",
        r"software engineer(?:ing)? agent",
        r"unified diff",
        r"failing tests?",
        r"(?:write|output) the patch",
    ),
    "tool_use": (r"tool calls?", r"available tools", r"which tools? to call", r"function calling"),
}


class IntentModelSettings(_Section):
    enabled: bool = True
    path: str = ""  # "": the weights shipped in the package
    max_chars: int = Field(default=512, ge=1)

    @field_validator("path")
    @classmethod
    def _exists(cls, path: str) -> str:
        if path and not Path(path).is_file():
            raise ValueError(f"no weights file at {path!r}")
        return path


class IntentSettings(_Section):
    patterns: dict[str, tuple[str, ...]] = DEFAULT_INTENT_PATTERNS
    model: IntentModelSettings = IntentModelSettings()

    @model_validator(mode="after")
    def _compiles(self) -> IntentSettings:
        from detector.features.intent import IntentTagger

        IntentTagger(self.patterns)  # unknown tags or bad regexes fail at start-up
        return self


class BehaviourSettings(_Section):
    enabled: bool = True
    min_events: int = Field(default=20, ge=1)
    reasoning_share: float = Field(default=0.4, gt=0, le=1)
    harvest_share: float = Field(default=0.6, gt=0, le=1)
    template_share: float = Field(default=0.7, gt=0, le=1)
    template_chain: int = Field(default=10, ge=2)
    shape_weights: dict[str, float] = {
        "at_limit": 0.4,
        "single_turn": 0.2,
        "stream_off": 0.2,
        "fixed_temperature": 0.2,
    }
    repetition_weight: float = Field(default=0.4, ge=0, le=1)
    severity_medium: float = Field(default=0.5, gt=0, le=1)
    severity_high: float = Field(default=0.75, gt=0, le=1)
    max_severity: Literal["low", "medium", "high"] = "low"
    baseline_min_samples: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _valid(self) -> BehaviourSettings:
        known = {"at_limit", "single_turn", "stream_off", "fixed_temperature"}
        if set(self.shape_weights) - known:
            raise ValueError(f"shape_weights keys must be among {sorted(known)}")
        if abs(sum(self.shape_weights.values()) - 1.0) > 1e-6:
            raise ValueError("shape_weights must add up to 1")
        if self.severity_high < self.severity_medium:
            raise ValueError("severity_high must be at least severity_medium")
        return self


class VolumeRuleSettings(_Section):
    enabled: bool = True
    new_account_max_age_s: float = Field(default=7 * 86400.0, ge=0)
    min_requests_1h: int = Field(default=120, ge=1)
    ratio_medium: float = Field(default=10.0, gt=1)
    ratio_high: float = Field(default=30.0, gt=1)
    baseline_min_samples: int = Field(default=30, ge=1)
    baseline_prior_per_hour: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> VolumeRuleSettings:
        if self.ratio_high < self.ratio_medium:
            raise ValueError("ratio_high must be at least ratio_medium")
        return self


class AnomalySettings(_Section):
    enabled: bool = True
    n_trees: int = Field(default=10, ge=1)
    height: int = Field(default=8, ge=2, le=14)
    window_size: int = Field(default=250, ge=10)
    seed: int = 42
    alert_score: float = Field(default=0.9, gt=0, le=1)
    learn_below_score: float = Field(default=0.8, gt=0, le=1)
    min_events: int = Field(default=50, ge=1)
    every_events: int = Field(default=8, ge=1)
    checkpoint_every_batches: int = Field(default=50, ge=1)


EVIDENCE_KINDS = ("bill", "cfp", "net", "asnua", "tpl", "lock", "born", "range")


# The group stage's kinds of evidence (``campaigns.evidence.FAMILY``, bound by a test).
GroupEvidenceKind = Literal[
    "net", "asnua", "cfp", "habit", "bill", "sys", "open", "tpl", "lock", "born", "young", "bhv"
]


class GroupSettings(_Section):
    """The group-first campaign stage (``campaigns.stage: groups``): ``detector.campaigns``."""

    value_shards: int = Field(default=16, ge=1, le=1024)
    group_shards: int = Field(default=16, ge=1, le=1024)
    window_s: float = Field(default=7 * 86400.0, gt=0)
    cap: int = Field(default=2000, ge=10)
    cap_share: float = Field(default=0.5, gt=0, le=1)
    cap_min: int = Field(default=50, ge=10)
    min_df: int = Field(default=3, ge=2)
    ramp_df: int = Field(default=5, ge=2)
    # How much sharing a value of each kind says about one operator; kinds left out weigh 1.
    kind_weights: dict[GroupEvidenceKind, float] = {}
    min_members: int = Field(default=3, ge=2)
    rho: float = Field(default=0.6, gt=0.5, le=1)
    value_cap: float = Field(default=0.5, gt=0, le=0.5)
    kind_cap: float = Field(default=0.55, gt=0, lt=1)
    family_cap: float = Field(default=0.55, gt=0, lt=1)
    support: float = Field(default=0.5, gt=0, le=1)
    seed_growth: float = Field(default=1.5, gt=1)
    seed_holders: int = Field(default=200, ge=3)
    judge_growth: float = Field(default=1.25, gt=1)
    judge_every_s: float = Field(default=1800.0, gt=0)
    index_refresh_s: float = Field(default=1800.0, ge=0)
    young_ratio: float = Field(default=0.25, gt=0, le=1)
    limit_share: float = Field(default=0.3, gt=0, le=1)
    limit_ratio: float = Field(default=4.0, ge=1)
    intent_share: float = Field(default=0.3, gt=0, le=1)
    intent_ratio: float = Field(default=2.0, ge=1)
    long_ratio: float = Field(default=4.0, ge=1)
    sync_share: float = Field(default=0.3, gt=0, le=1)
    sync_members: int = Field(default=10, ge=2)
    medium_indicators: int = Field(default=2, ge=1)
    cohort_indicators: list[Literal["young", "limit", "long", "intent", "sync"]] = [
        "young",
        "intent",
    ]
    high_indicators: int = Field(default=3, ge=1)
    high_members: int = Field(default=10, ge=2)
    critical_members: int = Field(default=30, ge=2)
    min_events: int = Field(default=30, ge=1)
    link_overlap: float = Field(default=0.5, gt=0, le=1)
    link_min_shared: int = Field(default=2, ge=1)
    background_accounts: int = Field(default=5000, ge=100)
    background_min: int = Field(default=100, ge=0)

    @model_validator(mode="after")
    def _no_chains(self) -> GroupSettings:
        if self.kind_cap >= self.rho:
            raise ValueError(
                "kind_cap must be below rho, or one kind of evidence could make a group"
            )
        if self.high_indicators < self.medium_indicators:
            raise ValueError("high_indicators must be at least medium_indicators")
        if any(not 0.0 <= w <= 1.0 for w in self.kind_weights.values()):
            raise ValueError("kind_weights values must be between 0 and 1")
        return self


class CampaignSettings(_Section):
    enabled: bool = True
    stage: Literal["links", "groups"] = "groups"
    groups: GroupSettings = GroupSettings()
    # "born" (account-creation hour) is off by default: on the default scenario, an hour shared
    # by accounts of two campaigns merged them; it needs more than three suspects to mean much.
    evidence_kinds: tuple[str, ...] = ("bill", "cfp", "net", "asnua", "tpl", "lock", "range")
    suspect_score: float = Field(default=0.35, ge=0, le=1)
    min_suspects: int = Field(default=3, ge=2)
    index_cap: int = Field(default=500, ge=10)
    evidence_per_account: int = Field(default=16, ge=1)
    ttl_s: int = Field(default=7 * 86400, ge=60)
    singleton_ttl_s: int = Field(default=3600, ge=60)
    index_refresh_s: float = Field(default=900.0, ge=0)
    churn_window_s: float = Field(default=6 * 3600.0, ge=3600)
    realert_growth: float = Field(default=1.5, gt=1)
    high_accounts: int = Field(default=10, ge=2)
    critical_accounts: int = Field(default=30, ge=2)
    critical_min_kinds: int = Field(default=2, ge=1)
    pivot_window_s: float = Field(default=86400.0, gt=0)
    pivot_min_share: float = Field(default=0.3, gt=0, le=1)
    pivot_min_ratio: float = Field(default=2.0, ge=1)
    pivot_min_requests: int = Field(default=20, ge=1)
    source_min_share: float = Field(default=0.2, gt=0, le=1)
    source_high_share: float = Field(default=0.8, gt=0, le=1)
    source_min_accounts: int = Field(default=5, ge=1)
    source_min_requests: int = Field(default=200, ge=1)
    source_realert_delta: float = Field(default=0.2, gt=0, le=1)
    source_cooldown_s: float = Field(default=86400.0, ge=0)

    @model_validator(mode="after")
    def _valid(self) -> CampaignSettings:
        unknown = set(self.evidence_kinds) - set(EVIDENCE_KINDS)
        if unknown:
            raise ValueError(
                f"evidence_kinds must be among {list(EVIDENCE_KINDS)}, not {sorted(unknown)}"
            )
        if self.critical_accounts < self.high_accounts:
            raise ValueError("critical_accounts must be at least high_accounts")
        if self.index_refresh_s >= self.singleton_ttl_s:
            raise ValueError(
                "index_refresh_s must be under singleton_ttl_s: an index entry not refreshed "
                "within its TTL expires"
            )
        return self


class AlertSettings(_Section):
    cooldown_s: float = Field(default=21600.0, ge=0)
    max_accounts_listed: int = Field(default=1000, ge=1)


class MetricsSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class ServiceSettings(_Section):
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    redact_dlq_payload: bool = False
    dlq_payload_max_bytes: int = Field(default=900_000, ge=0)


class TapSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_event_bytes: int = Field(default=1_000_000, ge=256)
    buffer_max_events: int = Field(default=10_000, ge=1)
    buffer_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    retry_after_s: int = Field(default=1, ge=1)
    linger_ms: int = Field(default=5, ge=0)
    batch_bytes: int = Field(default=256 * 1024, ge=1024)
    send_timeout_ms: int = Field(default=5000, ge=100)
    ack_timeout_ms: int = Field(default=5000, ge=100)
    delivery_timeout_ms: int = Field(default=120_000, ge=1000)
    drain_timeout_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _sizes(self) -> TapSettings:
        if self.max_event_bytes > self.max_body_bytes:
            raise ValueError("max_event_bytes must be at most max_body_bytes")
        if self.max_body_bytes > self.buffer_max_bytes:
            raise ValueError(
                "max_body_bytes must be at most buffer_max_bytes (one request must fit)"
            )
        if self.delivery_timeout_ms < self.linger_ms + 1000:
            raise ValueError("delivery_timeout_ms must be at least linger_ms + 1000")
        return self


class PagerSettings(_Section):
    alertmanager_urls: tuple[str, ...] = ("http://localhost:9093",)
    group_id: str = "detector-pager"
    severities: tuple[str, ...] = ("critical",)
    subject_types: tuple[str, ...] = ("campaign",)
    quiet_after_s: float = Field(default=3600.0, gt=0)
    resend_interval_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    accounts_listed: int = Field(default=20, ge=0)
    runbook_url: str = "docs/runbooks/campaign-critical.md"
    alertname: str = Field(default="DetectorCampaign", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _valid(self) -> PagerSettings:
        if not self.alertmanager_urls:
            raise ValueError("alertmanager_urls must name at least one Alertmanager")
        for url in self.alertmanager_urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"alertmanager_urls: {redact_url(url)!r} is not an http(s) URL")
        severities = {"low", "medium", "high", "critical"}
        if not self.severities or set(self.severities) - severities:
            raise ValueError(f"severities must be a non-empty list among {sorted(severities)}")
        kinds = {"account", "campaign", "source"}
        if not self.subject_types or set(self.subject_types) - kinds:
            raise ValueError(f"subject_types must be a non-empty list among {sorted(kinds)}")
        if self.resend_interval_s >= self.quiet_after_s:
            raise ValueError("resend_interval_s must be shorter than quiet_after_s")
        return self


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    state: StateSettings = StateSettings()
    features: FeatureSettings = FeatureSettings()
    intent: IntentSettings = IntentSettings()
    behaviour: BehaviourSettings = BehaviourSettings()
    volume_rule: VolumeRuleSettings = VolumeRuleSettings()
    anomaly: AnomalySettings = AnomalySettings()
    campaigns: CampaignSettings = CampaignSettings()
    alerting: AlertSettings = AlertSettings()
    metrics: MetricsSettings = MetricsSettings()
    service: ServiceSettings = ServiceSettings()
    tap: TapSettings = TapSettings()
    pager: PagerSettings = PagerSettings()

    def with_overrides(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some fields of some sections replaced, validated again."""
        data = self.model_dump()
        for name, fields in sections.items():
            data.setdefault(name, {}).update(fields)
        return build_settings(data)


# The two settings with an environment variable of their own; every other one is DETECTOR__...
_ENV_NAMES = {
    ("kafka", "bootstrap_servers"): "KAFKA_BOOTSTRAP_SERVERS",
    ("redis", "url"): "REDIS_URL",
}


def env_name(section: str, key: str) -> str:
    """The environment variable that sets ``section.key``, for messages that say what to change."""
    return _ENV_NAMES.get((section, key), f"{ENV_PREFIX}{section.upper()}__{key.upper()}")


def _setting_name(loc: tuple[int | str, ...]) -> str:
    name = ".".join(str(p) for p in loc) or "(top level)"
    if len(loc) == 2 and (env := _ENV_NAMES.get((str(loc[0]), str(loc[1])))):
        return f"{name} ({env})"  # a user who set the variable looks for its name
    return name


def build_settings(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_setting_name(err['loc'])}: "
            # pydantic prefixes a validator's own message with "Value error, ": noise to a user
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_value(raw: str) -> Any:
    """Lists and mappings as YAML; scalars stay text for the model to convert (so '123' can be a name)."""
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return parsed if isinstance(parsed, list | dict) else raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings named by environment variables, values parsed as YAML scalars."""
    found: dict[str, Any] = {}
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        found.setdefault("kafka", {})["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
    if environ.get("REDIS_URL"):
        found.setdefault("redis", {})["url"] = environ["REDIS_URL"]
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment variable {name} must look like DETECTOR__SECTION__KEY")
        found.setdefault(parts[0], {})[parts[1]] = _env_value(raw)
    return found


def load_settings(
    overlay: Path | None = None,
    environ: Mapping[str, str] | None = None,
    base: Path | None = DEFAULT_CONFIG_PATH,
) -> Settings:
    data: dict[str, Any] = {}
    if base is not None and base.exists():
        data = _read_yaml(base)
    if overlay is not None:
        data = _merge(data, _read_yaml(overlay))
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    return build_settings(data)


def printable(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret hidden (passwords in URLs); for display.

    The Kafka SASL password is never a setting, so it cannot appear here.
    """
    data = settings.model_dump(mode="json")
    data["redis"]["url"] = redact_url(settings.redis.url)
    data["pager"]["alertmanager_urls"] = [redact_url(u) for u in settings.pager.alertmanager_urls]
    return data


def redact_url(url: str) -> str:
    """The URL with any password (in the credentials or the query) replaced, for logs and errors."""
    url = re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ':'}***@{host}"
