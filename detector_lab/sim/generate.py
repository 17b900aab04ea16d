"""Labelled traffic from a scenario: honest populations and campaigns, as contract-valid events.

Each group draws from its own random stream (seeded by the scenario seed and the
group's name), so adding a group does not change the others' traffic.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from detector_lab.sim import text
from detector_lab.sim.scenario import (
    AppBackends,
    BenchmarkRuns,
    EnterpriseBatch,
    HydraCampaign,
    Individuals,
    LockstepCampaign,
    LowAndSlowCampaign,
    ResidentialMimicCampaign,
    Scenario,
)

HOUR_S = 3600.0
DAY_S = 86400.0

# Address pools: (first two octets, ASN, country).
RESIDENTIAL = [("73.%d", 7922, "US"), ("86.%d", 5089, "GB"), ("24.%d", 20115, "US"), ("91.%d", 3320, "DE"),
               ("122.%d", 4713, "JP"), ("49.%d", 45609, "IN"), ("177.%d", 28573, "BR")]  # fmt: skip
CLOUD = [("34.%d", 15169, "US"), ("52.%d", 16509, "US"), ("20.%d", 8075, "NL")]
HOSTING = [("45.77", 20473, "NL"), ("104.238", 20473, "US"), ("5.161", 60781, "NL")]
RESELLER = ("185.199", 64500, "SG")  # the commercial reseller's own range
BROWSERS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)",
            "Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5)")  # fmt: skip
SDKS = ("openai-python/1.40.0", "anthropic-sdk-python/0.34.0", "langchain/0.2.11", "node-fetch/3.3")


@dataclass
class Traffic:
    events: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class _Ctx:
    scenario: Scenario
    rng: random.Random
    group: str
    label: str
    traffic: Traffic
    style: str = ""  # a campaign's house style for its prompts

    @property
    def start(self) -> float:
        return self.scenario.start_ts

    @property
    def end(self) -> float:
        return self.scenario.start_ts + self.scenario.days * DAY_S

    @property
    def release_ts(self) -> float:
        return self.start + self.scenario.newest.released_at_h * HOUR_S

    def account(self, index: int, suffix: str = "") -> str:
        account = f"{self.group}-{index:05d}{suffix}"
        self.traffic.labels[account] = {"label": self.label, "group": self.group}
        return account

    def hexid(self, bits: int = 64) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def emit(self, **fields: Any) -> None:
        event: dict[str, Any] = {"event_id": f"ev-{self.hexid(96)}", "status": "ok"}
        event.update({k: v for k, v in fields.items() if v is not None})
        event["ts"] = round(event["ts"], 3)
        event["latency_ms"] = round(
            200 + event.get("output_tokens", 100) * self.rng.uniform(8, 25), 1
        )
        self.traffic.events.append(event)


def _ip(
    rng: random.Random, pool: tuple[str, int, str], fixed_third: int | None = None
) -> tuple[str, int, str]:
    prefix, asn, country = pool
    if "%d" in prefix:
        prefix = prefix % rng.randrange(256)
    third = rng.randrange(256) if fixed_third is None else fixed_third
    return f"{prefix}.{third}.{rng.randrange(1, 255)}", asn, country


def _times(
    rng: random.Random,
    start: float,
    end: float,
    per_s: float,
    intensity: Callable[[float], float] | None = None,
) -> Iterator[float]:
    """A Poisson process; with ``intensity`` (0..1), thinned to follow it."""
    if per_s <= 0:
        return
    t = start
    while True:
        t += rng.expovariate(per_s)
        if t >= end:
            return
        if intensity is None or rng.random() < intensity(t):
            yield t


def diurnal(tz_h: float) -> Callable[[float], float]:
    """Activity by local hour: quiet at night, busy in the day, some evening use."""

    def weight(ts: float) -> float:
        hour = ((ts / HOUR_S) + tz_h) % 24
        if hour < 7:
            return 0.04
        if hour < 9:
            return 0.5
        if hour < 18:
            return 1.0
        return 0.6 if hour < 23 else 0.2

    return weight


def _model_for(ctx: _Ctx, ts: float, share_new: float, delay_h: float = 0.0) -> str:
    if share_new and ts >= ctx.release_ts + delay_h * HOUR_S and ctx.rng.random() < share_new:
        return ctx.scenario.newest.name
    return ctx.scenario.default_model


def _honest_tokens(rng: random.Random, prompt: str, turns: int) -> dict[str, Any]:
    max_tokens = rng.choice((None, 1024, 2048, 4096))
    out = int(rng.lognormvariate(5.5, 0.8))
    return {
        "input_tokens": len(prompt) // 4 + 120 * (turns - 1),
        "output_tokens": min(out, max_tokens or 8192),
        "max_tokens": max_tokens,
        "temperature": rng.choice((None, 0.2, 0.7, 0.7, 1.0)),
    }


def individuals(pop: Individuals, ctx: _Ctx) -> None:
    rng = ctx.rng
    reseller = pop.network == "reseller"
    for i in range(pop.accounts):
        account = ctx.account(i)
        tz = rng.choice(pop.timezones_h)
        created = ctx.start - rng.uniform(5, 900) * DAY_S
        ip, asn, country = _ip(rng, RESELLER if reseller else rng.choice(RESIDENTIAL))
        agent = "relay-gw/2.3 (+reseller)" if reseller else rng.choice(BROWSERS)
        fingerprint = f"cfp-{ctx.hexid(48)}"
        billing = f"bill-{ctx.hexid(48)}"
        daily = rng.lognormvariate(math.log(pop.daily_requests), pop.daily_sigma)
        # Sessions arrive as a diurnal Poisson process; each is a short multi-turn chat.
        session_rate = daily / pop.chat_turns / DAY_S / 0.55  # 0.55: mean of the diurnal weight
        for ts in _times(rng, ctx.start, ctx.end, session_rate, diurnal(tz)):
            turns = (
                1 + int(rng.expovariate(1 / max(pop.chat_turns - 1, 0.01)))
                if pop.chat_turns > 1
                else 1
            )
            if reseller and rng.random() < 0.3:
                ip, asn, country = _ip(
                    rng, RESELLER
                )  # the reseller spreads customers over its range
            for turn in range(min(turns, 12)):
                prompt = text.honest_prompt(rng) if turn == 0 else text.followup(rng)
                ctx.emit(
                    ts=ts, account_id=account, model=_model_for(ctx, ts, pop.new_model_share),
                    account_created_ts=created, billing_fingerprint=billing, source_ip=ip, asn=asn,
                    country=country, user_agent=agent, client_fingerprint=fingerprint, prompt=prompt,
                    n_messages=1 + 2 * turn, stream=rng.random() < 0.8, tools=0,
                    **_honest_tokens(rng, prompt, turn + 1),
                )  # fmt: skip
                ts += rng.uniform(20, 240)


def app_backends(pop: AppBackends, ctx: _Ctx) -> None:
    rng = ctx.rng
    for i in range(pop.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(60, 1200) * DAY_S
        ip, asn, country = _ip(rng, rng.choice(CLOUD))
        system = text.system_prompt(rng, pop.workload)
        sdk = rng.choice(SDKS)
        rate = rng.lognormvariate(math.log(pop.hourly_requests), 0.6) / HOUR_S
        tz = rng.choice((-5.0, 1.0, 8.0))
        streamed = pop.workload == "coding_assistant"  # an IDE streams; a backend job does not
        for ts in _times(rng, ctx.start, ctx.end, rate / 0.55, diurnal(tz)):
            prompt = text.workload_prompt(rng, pop.workload)
            tools = rng.randint(1, 6) if rng.random() < pop.tool_share else 0
            turns = rng.choice((1, 3, 5, 7, 9)) if streamed else rng.choice((1, 1, 2, 3))
            ctx.emit(
                ts=ts, account_id=account, model=ctx.scenario.default_model, account_created_ts=created,
                org_id=f"org-{account}", billing_fingerprint=f"bill-{account}", source_ip=ip, asn=asn,
                country=country, user_agent=sdk, client_fingerprint=f"cfp-{account}", prompt=prompt,
                system_prompt=system, n_messages=turns, tools=tools, stream=streamed and rng.random() < 0.9,
                **_honest_tokens(rng, prompt, 1),
            )  # fmt: skip


def enterprise_batch(pop: EnterpriseBatch, ctx: _Ctx) -> None:
    rng = ctx.rng
    orgs = max(1, pop.accounts // pop.accounts_per_org)
    index = 0
    for o in range(orgs):
        org = f"org-{ctx.group}-{o}"
        billing = f"bill-{ctx.hexid(48)}"  # one payment instrument for the whole org
        ip, asn, country = _ip(rng, rng.choice(CLOUD))
        template = (
            "Classify the following customer message into one of: billing, bug, feature, other. "
            "Ticket {n}. Message: {t}",
            "Extract the product, sentiment and urgency from this review as JSON. Review {n}: {t}",
            "Summarise this internal document section in two sentences for the weekly digest: {t}",
        )[o % 3]
        for _ in range(pop.accounts_per_org):
            account = ctx.account(index)
            index += 1
            created = ctx.start - rng.uniform(200, 1500) * DAY_S
            job_start = rng.uniform(0, 24 - pop.job_hours)
            day = 0.0
            while ctx.start + day * DAY_S < ctx.end:
                begin = ctx.start + day * DAY_S + job_start * HOUR_S
                for ts in _times(
                    rng,
                    begin,
                    min(ctx.end, begin + pop.job_hours * HOUR_S),
                    pop.hourly_requests / HOUR_S,
                ):
                    prompt = text.batch_item(rng, template)
                    ctx.emit(
                        ts=ts, account_id=account, model=ctx.scenario.default_model, org_id=org,
                        account_created_ts=created, billing_fingerprint=billing, source_ip=ip, asn=asn,
                        country=country, user_agent="acme-batch/4.1 python-httpx/0.27",
                        client_fingerprint=f"cfp-{org}", prompt=prompt, n_messages=1, tools=0, stream=False,
                        input_tokens=len(prompt) // 4, output_tokens=rng.randint(20, 200), max_tokens=256,
                        temperature=0.0,
                    )  # fmt: skip
                day += 1


def benchmark(pop: BenchmarkRuns, ctx: _Ctx) -> None:
    rng = ctx.rng
    for i in range(pop.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(100, 1500) * DAY_S
        ip, asn, country = _ip(rng, rng.choice(CLOUD + RESIDENTIAL[:2]))
        n = rng.randint(*pop.prompts)
        begin = rng.uniform(ctx.start, ctx.end - pop.duration_h * HOUR_S)
        step = pop.duration_h * HOUR_S / n
        for k in range(n):
            prompt = f"Question {k + 1}: {text.honest_prompt(rng, 2)}\nLet's think step by step."
            ctx.emit(
                ts=begin + k * step + rng.uniform(0, step / 2), account_id=account, model=ctx.scenario.default_model,
                account_created_ts=created, billing_fingerprint=f"bill-{account}", source_ip=ip, asn=asn,
                country=country, user_agent="lm-eval-harness/0.4 openai-python/1.40.0",
                client_fingerprint=f"cfp-{account}", prompt=prompt, n_messages=1, tools=0, stream=False,
                input_tokens=len(prompt) // 4, output_tokens=rng.randint(100, 1200), max_tokens=2048, temperature=0.0,
            )  # fmt: skip


def _harvest(ctx: _Ctx, capabilities: tuple[str, ...], **fields: Any) -> None:
    """One campaign request: templated prompt, fixed sampling, long outputs, no streaming."""
    rng = ctx.rng
    capability = rng.choice(capabilities)
    prompt = text.harvest_prompt(rng, capability, style=ctx.style)
    max_tokens = 4096
    ctx.emit(
        prompt=prompt, n_messages=fields.pop("n_messages", 1), max_tokens=max_tokens, temperature=0.0,
        input_tokens=len(prompt) // 4, output_tokens=max_tokens if rng.random() < 0.6 else rng.randint(1500, max_tokens),
        stream=False, tools=rng.randint(3, 8) if capability == "tool_use" else 0, **fields,
    )  # fmt: skip


def lockstep(c: LockstepCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    begin = ctx.start + c.start_h * HOUR_S
    end = min(ctx.end, begin + c.duration_h * HOUR_S)
    billings = [f"bill-{ctx.hexid(48)}" for _ in range(c.billing_fingerprints)]
    range_third = rng.randrange(256)
    members = []
    for i in range(c.accounts):
        ip, asn, country = _ip(rng, HOSTING[i % len(HOSTING)], fixed_third=range_third)
        members.append(
            (
                ctx.account(i),
                begin - rng.uniform(0.2, 3) * DAY_S,
                billings[i % len(billings)],
                ip,
                asn,
                country,
            )
        )
    # One scheduler ticks for every account at once: synchronised to within a few seconds.
    for tick in _times(rng, begin, end, c.hourly_requests / HOUR_S):
        for account, created, billing, ip, asn, country in members:
            if rng.random() < 0.9:
                _harvest(
                    ctx, c.capabilities, ts=tick + rng.uniform(0, c.jitter_s), account_id=account,
                    model=ctx.scenario.default_model, account_created_ts=created, billing_fingerprint=billing,
                    source_ip=ip, asn=asn, country=country, user_agent="python-httpx/0.27.0",
                    client_fingerprint="cfp-harvest-a",
                )  # fmt: skip


def low_and_slow(c: LowAndSlowCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    fingerprints = [f"cfp-{ctx.hexid(48)}" for _ in range(c.client_fingerprints)]
    for i in range(c.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(10, 60) * DAY_S  # aged accounts, bought or farmed
        ip, asn, country = _ip(rng, rng.choice(RESIDENTIAL + HOSTING))
        rate = rng.uniform(0.6, 1.0) * c.daily_requests / DAY_S
        for ts in _times(rng, ctx.start, ctx.end, rate):  # round the clock: no diurnal rhythm
            _harvest(
                ctx, c.capabilities, ts=ts, account_id=account, model=ctx.scenario.default_model,
                account_created_ts=created, billing_fingerprint=f"bill-{ctx.hexid(48)}", source_ip=ip, asn=asn,
                country=country, user_agent=SDKS[0], client_fingerprint=fingerprints[i % len(fingerprints)],
            )  # fmt: skip


def hydra(c: HydraCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    serial = 0
    for slot in range(c.accounts):  # ``accounts`` live at any time; each is replaced when it dies
        t = ctx.start + rng.uniform(0, c.lifetime_h) * HOUR_S - c.lifetime_h * HOUR_S
        while t < ctx.end:
            account = ctx.account(serial, suffix=f"-s{slot}")
            serial += 1
            born = max(t, ctx.start)
            dies = min(ctx.end, t + rng.uniform(0.7, 1.3) * c.lifetime_h * HOUR_S)
            created = born - rng.uniform(60, 1800)  # created minutes before first use
            for ts in _times(rng, born, dies, c.hourly_requests / HOUR_S):
                ip, asn, country = _ip(rng, RESELLER)
                _harvest(
                    ctx, c.capabilities, ts=ts, account_id=account,
                    model=_model_for(ctx, ts, c.new_model_share, c.pivot_delay_h), account_created_ts=created,
                    billing_fingerprint=f"bill-{ctx.hexid(48)}", source_ip=ip, asn=asn, country=country,
                    user_agent="relay-gw/2.3 (+reseller)", client_fingerprint=f"cfp-{ctx.hexid(48)}",
                )  # fmt: skip
            t = dies  # replaced at once


def residential_mimic(c: ResidentialMimicCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    for i in range(c.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(3, 40) * DAY_S
        rate = rng.uniform(0.7, 1.3) * c.daily_requests / 3 / DAY_S / 0.55
        for ts in _times(rng, ctx.start, ctx.end, rate, diurnal(c.timezone_h)):
            ip, asn, country = _ip(
                rng, rng.choice(RESIDENTIAL)
            )  # a fresh residential proxy per session
            for turn in range(rng.randint(2, 4)):
                _harvest(
                    ctx, c.capabilities, ts=ts, account_id=account, model=ctx.scenario.default_model,
                    account_created_ts=created, billing_fingerprint=f"bill-{account}", source_ip=ip, asn=asn,
                    country=country, user_agent=rng.choice(BROWSERS), client_fingerprint="cfp-mimic-sdk",
                    n_messages=1 + 2 * turn,
                )  # fmt: skip
                ts += rng.uniform(15, 90)


_GENERATORS: dict[str, Callable[[Any, _Ctx], None]] = {
    "individual": individuals,
    "app_backend": app_backends,
    "enterprise_batch": enterprise_batch,
    "benchmark": benchmark,
    "lockstep": lockstep,
    "low_and_slow": low_and_slow,
    "hydra": hydra,
    "residential_mimic": residential_mimic,
}


def simulate(scenario: Scenario, progress: Callable[[str], None] | None = None) -> Traffic:
    """All events of the scenario sorted by ``ts`` (ties by ``event_id``), and every account's label."""
    traffic = Traffic()
    groups = [(p, "benign") for p in scenario.populations] + [
        (c, "malicious") for c in scenario.campaigns
    ]
    for group, label in groups:
        if progress:
            progress(group.name)
        rng = random.Random(scenario.seed * 1_000_003 + zlib.crc32(group.name.encode()))
        style = (
            text.house_style(random.Random(zlib.crc32(group.name.encode())))
            if label == "malicious"
            else ""
        )
        _GENERATORS[group.kind](group, _Ctx(scenario, rng, group.name, label, traffic, style))
    end = scenario.start_ts + scenario.days * DAY_S
    traffic.events = [e for e in traffic.events if scenario.start_ts <= e["ts"] < end]
    traffic.events.sort(key=lambda e: (e["ts"], e["event_id"]))
    seen = {e["account_id"] for e in traffic.events}
    traffic.labels = {a: v for a, v in traffic.labels.items() if a in seen}
    return traffic
