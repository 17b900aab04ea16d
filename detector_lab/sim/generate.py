"""Labelled traffic from a scenario: honest populations and campaigns, as contract-valid events.

Each group draws from its own random stream (seeded by the scenario seed and the
group's name), so adding a group does not change the others' traffic. A group's
knobs (``scenario.py``) draw nothing from that stream while they sit at their
defaults, so scenarios written before a knob existed still generate the same events.
"""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
    _Campaign,
    _Group,
)

HOUR_S = 3600.0
DAY_S = 86400.0
_T = TypeVar("_T")
Address = tuple[str, int, str]  # source_ip, asn, country

# Address pools: (first two octets, ASN, country).
RESIDENTIAL = [("73.%d", 7922, "US"), ("86.%d", 5089, "GB"), ("24.%d", 20115, "US"), ("91.%d", 3320, "DE"),
               ("122.%d", 4713, "JP"), ("49.%d", 45609, "IN"), ("177.%d", 28573, "BR")]  # fmt: skip
CLOUD = [("34.%d", 15169, "US"), ("52.%d", 16509, "US"), ("20.%d", 8075, "NL")]
HOSTING = [("45.77", 20473, "NL"), ("104.238", 20473, "US"), ("5.161", 60781, "NL")]
RESELLER = ("185.199", 64500, "SG")  # the commercial reseller's own range
# Carrier-grade NAT of mobile operators: many subscribers behind each address.
MOBILE = [("172.56", 21928, "US"), ("117.136", 9808, "CN"), ("83.149", 31133, "RU"),
          ("187.190", 8151, "MX"), ("82.132", 35228, "GB")]  # fmt: skip
# Corporate and university egress: a whole campus behind a handful of addresses.
NAT = [("128.2", 9, "US"), ("131.111", 786, "GB"), ("129.132", 559, "CH"), ("12.%d", 7018, "US")]
NETWORKS: dict[str, Sequence[tuple[str, int, str]]] = {
    "residential": RESIDENTIAL,
    "reseller": (RESELLER,),
    "mobile": MOBILE,
    "nat": NAT,
    "cloud": CLOUD,
    "hosting": HOSTING,
    "research": CLOUD + RESIDENTIAL[:2],  # benchmark runs: cloud VMs and a few home machines
}
BROWSERS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)",
            "Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5)")  # fmt: skip
SDKS = ("openai-python/1.40.0", "anthropic-sdk-python/0.34.0", "langchain/0.2.11", "node-fetch/3.3")
RESELLER_AGENT = "relay-gw/2.3 (+reseller)"
# Habits of people and products (None: the field is not sent).
MAX_TOKENS_HABITS = (None, 1024, 2048, 4096)
TEMPERATURE_HABITS = (None, 0.2, 0.7, 0.7, 1.0)
DIURNAL_MEAN = 0.55  # mean of ``diurnal`` over a day: divides a daily rate into a peak rate
TOOL_RESULT_TOKENS = 350  # context an agent loop adds per turn (tool calls and results)


@dataclass
class Traffic:
    events: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class _Ctx:
    scenario: Scenario
    rng: random.Random
    group: _Group
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

    @property
    def half(self) -> text.Half | None:
        return self.scenario.half

    def account(self, index: int, suffix: str = "") -> str:
        account = self.token(f"{self.group.name}-{index:05d}{suffix}", "acct")
        self.traffic.labels[account] = {
            "label": self.label,
            "group": self.group.name,
            "family": self.group.family,
            "variant": self.group.variant,
        }
        return account

    def token(self, name: str, prefix: str) -> str:
        """``name``, or with opaque ids a hash of it: an id must not spell its group."""
        if self.scenario.account_ids == "named":
            return name
        digest = hashlib.blake2b(f"{self.scenario.seed}:{name}".encode(), digest_size=8)
        return f"{prefix}-{digest.hexdigest()}"

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


def _pick(rng: random.Random, options: Sequence[_T]) -> _T:
    """``rng.choice``, except that a single option draws nothing (keeps old streams intact)."""
    return options[0] if len(options) == 1 else rng.choice(options)


def _ip(rng: random.Random, pool: tuple[str, int, str], fixed_third: int | None = None) -> Address:
    prefix, asn, country = pool
    if "%d" in prefix:
        prefix = prefix % rng.randrange(256)
    third = rng.randrange(256) if fixed_third is None else fixed_third
    return f"{prefix}.{third}.{rng.randrange(1, 255)}", asn, country


def _address(rng: random.Random, network: str) -> Address:
    return _ip(rng, _pick(rng, NETWORKS[network]))


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


def _ramp(ts: float, begin: float, ramp_s: float) -> float:
    """Share of full volume ``ts - begin`` into a ramp: 10% at the start, full after ``ramp_s``."""
    return min(1.0, 0.1 + 0.9 * (ts - begin) / ramp_s)


def _ramped(
    intensity: Callable[[float], float] | None, begin: float, ramp_s: float
) -> Callable[[float], float]:
    def weight(ts: float) -> float:
        return (1.0 if intensity is None else intensity(ts)) * _ramp(ts, begin, ramp_s)

    return weight


def _surge(
    intensity: Callable[[float], float], release_ts: float, boost: float
) -> Callable[[float], float]:
    """``intensity`` for a process running ``boost`` times faster: full in the day after a
    release, thinned back to the usual rate outside it."""

    def weight(ts: float) -> float:
        in_surge = release_ts <= ts < release_ts + DAY_S
        return intensity(ts) * (1.0 if in_surge else 1.0 / boost)

    return weight


def _session_length(rng: random.Random, mean: float, cap: int) -> int:
    """Requests in one session: 1 plus an exponential tail, ``mean`` on average."""
    turns = 1 + int(rng.expovariate(1 / max(mean - 1, 0.01))) if mean > 1 else 1
    return min(turns, cap)


def _tool_loop_prompt(ctx: _Ctx, task: str, language: str) -> str:
    """The last user message of an agent loop's next turn: mostly still the task (the new
    messages are tool results), sometimes the user steering."""
    if ctx.rng.random() < 0.7:
        return task
    return text.followup(ctx.rng, half=ctx.half, language=language)


def _model_for(ctx: _Ctx, ts: float, share_new: float, delay_h: float = 0.0) -> str:
    if share_new and ts >= ctx.release_ts + delay_h * HOUR_S and ctx.rng.random() < share_new:
        return ctx.scenario.newest.name
    return ctx.scenario.default_model


def _habit(rng: random.Random, sampling: str) -> tuple[int | None, float | None] | None:
    """A product's fixed (max_tokens, temperature), or None: chosen per request."""
    if sampling == "varied":
        return None
    return rng.choice((1024, 2048, 4096, 8192)), rng.choice((0.0, 0.2, 0.7))


def _honest_tokens(
    rng: random.Random,
    prompt: str,
    turns: int,
    habit: tuple[int | None, float | None] | None = None,
) -> dict[str, Any]:
    max_tokens = rng.choice(MAX_TOKENS_HABITS) if habit is None else habit[0]
    out = int(rng.lognormvariate(5.5, 0.8))
    return {
        "input_tokens": len(prompt) // 4 + 120 * (turns - 1),
        "output_tokens": min(out, max_tokens or 8192),
        "max_tokens": max_tokens,
        "temperature": rng.choice(TEMPERATURE_HABITS) if habit is None else habit[1],
    }


def _tools(rng: random.Random, share: float, most: int) -> int:
    return rng.randint(1, most) if share and rng.random() < share else 0


def _honest_text(
    ctx: _Ctx,
    kind: str | None,
    language: str,
    max_sentences: int = 4,
    sources: Sequence[str] = (),
) -> str:
    """A first message: prose asked about (from one of ``sources``), or a request of ``kind``."""
    if kind is not None:
        return text.honest_request(ctx.rng, kind, half=ctx.half, language=language)
    source = _pick(ctx.rng, sources) if sources else None
    return text.honest_prompt(
        ctx.rng, max_sentences, half=ctx.half, source=source, language=language
    )


def individuals(pop: Individuals, ctx: _Ctx) -> None:
    rng = ctx.rng
    reseller = pop.network == "reseller"
    egress = (
        [_address(rng, "nat") for _ in range(pop.egress_addresses)] if pop.network == "nat" else []
    )
    # One open-source client run by many unrelated people: same agent, fingerprint, system prompt.
    client = pop.shared_client
    system = text.system_prompt(rng, "coding_agent_client", half=ctx.half) if client else None
    for i in range(pop.accounts):
        account = ctx.account(i)
        tz = rng.choice(pop.timezones_h)
        created = ctx.start - rng.uniform(5, 900) * DAY_S
        ip, asn, country = _pick(rng, egress) if egress else _address(rng, pop.network)
        agent = client or (RESELLER_AGENT if reseller else rng.choice(BROWSERS))
        fingerprint = f"cfp-{zlib.crc32(client.encode()):08x}" if client else f"cfp-{ctx.hexid(48)}"
        billing = f"bill-{ctx.hexid(48)}"
        daily = rng.lognormvariate(math.log(pop.daily_requests), pop.daily_sigma)
        language = _pick(rng, pop.languages)
        habit = _habit(rng, pop.sampling)
        begin = ctx.start
        if pop.release_joiners and rng.random() < pop.release_joiners:
            created = begin = ctx.release_ts + rng.uniform(0, 12) * HOUR_S  # signs up to try it
        # Sessions arrive as a diurnal Poisson process; each is a short multi-turn chat.
        session_rate = daily / pop.chat_turns / DAY_S / DIURNAL_MEAN
        rhythm = diurnal(tz)
        if pop.release_boost != 1:
            session_rate *= pop.release_boost
            rhythm = _surge(rhythm, ctx.release_ts, pop.release_boost)
        for ts in _times(rng, begin, ctx.end, session_rate, rhythm):
            turns = _session_length(rng, pop.chat_turns, pop.max_turns)
            if reseller and rng.random() < 0.3:  # the reseller spreads customers over its range
                ip, asn, country = _ip(rng, RESELLER)
            task = ""
            for turn in range(turns):
                if turn == 0:
                    prompt = task = _honest_text(ctx, pop.request_kind, language, 4, pop.sources)
                elif client:
                    prompt = _tool_loop_prompt(ctx, task, language)
                else:
                    prompt = text.followup(rng, half=ctx.half, language=language)
                ctx.emit(
                    ts=ts, account_id=account, model=_model_for(ctx, ts, pop.new_model_share),
                    account_created_ts=created, billing_fingerprint=billing, source_ip=ip, asn=asn,
                    country=country, user_agent=agent, client_fingerprint=fingerprint, prompt=prompt,
                    system_prompt=system, n_messages=1 + 2 * turn, stream=rng.random() < pop.stream_share,
                    tools=_tools(rng, pop.tool_share, 16), **_honest_tokens(rng, prompt, turn + 1, habit),
                )  # fmt: skip
                ts += rng.uniform(*pop.turn_gap_s)


def _app_prompt(ctx: _Ctx, pop: AppBackends, language: str) -> str:
    if pop.request_kind is None:
        return text.workload_prompt(ctx.rng, pop.workload)
    return text.honest_request(ctx.rng, pop.request_kind, half=ctx.half, language=language)


def app_backends(pop: AppBackends, ctx: _Ctx) -> None:
    rng = ctx.rng
    multi_turn = pop.workload in ("coding_assistant", "tutoring")
    stream_share = pop.stream_share
    if stream_share is None:
        stream_share = 0.9 if pop.workload == "coding_assistant" else 0.0  # an IDE streams
    for i in range(pop.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(60, 1200) * DAY_S
        ip, asn, country = _address(rng, pop.network)
        system = text.system_prompt(
            rng, pop.workload, half=ctx.half, language=_pick(rng, pop.languages)
        )
        sdk = rng.choice(SDKS)
        rate = rng.lognormvariate(math.log(pop.hourly_requests), 0.6) / HOUR_S
        tz = rng.choice(pop.timezones_h)
        habit = _habit(rng, pop.sampling)
        for ts in _times(rng, ctx.start, ctx.end, rate / DIURNAL_MEAN, diurnal(tz)):
            prompt = _app_prompt(ctx, pop, _pick(rng, pop.languages))  # the app's users' languages
            tools = rng.randint(1, 6) if rng.random() < pop.tool_share else 0
            turns = rng.choice((1, 3, 5, 7, 9)) if multi_turn else rng.choice((1, 1, 2, 3))
            ctx.emit(
                ts=ts, account_id=account, model=ctx.scenario.default_model, account_created_ts=created,
                org_id=f"org-{account}", billing_fingerprint=f"bill-{account}", source_ip=ip, asn=asn,
                country=country, user_agent=sdk, client_fingerprint=f"cfp-{account}", prompt=prompt,
                system_prompt=system, n_messages=turns, tools=tools,
                stream=stream_share > 0 and rng.random() < stream_share,
                **_honest_tokens(rng, prompt, 1, habit),
            )  # fmt: skip


def enterprise_batch(pop: EnterpriseBatch, ctx: _Ctx) -> None:
    rng = ctx.rng
    orgs = max(1, pop.accounts // pop.accounts_per_org)
    index = 0
    for o in range(orgs):
        org = ctx.token(f"org-{ctx.group.name}-{o}", "org")
        billing = f"bill-{ctx.hexid(48)}"  # one payment instrument for the whole org
        ip, asn, country = _address(rng, "cloud")
        template = pop.templates[o % len(pop.templates)]
        for _ in range(pop.accounts_per_org):
            account = ctx.account(index)
            index += 1
            created = ctx.start - rng.uniform(200, 1500) * DAY_S
            job_start = rng.uniform(0, 24 - pop.job_hours)
            day = 0.0
            while ctx.start + day * DAY_S < ctx.end:
                begin = ctx.start + day * DAY_S + job_start * HOUR_S
                end = min(ctx.end, begin + pop.job_hours * HOUR_S)
                for ts in _times(rng, begin, end, pop.hourly_requests / HOUR_S):
                    prompt = text.batch_item(rng, template, half=ctx.half)
                    ctx.emit(
                        ts=ts, account_id=account, model=ctx.scenario.default_model, org_id=org,
                        account_created_ts=created, billing_fingerprint=billing, source_ip=ip, asn=asn,
                        country=country, user_agent=pop.user_agent, client_fingerprint=f"cfp-{org}",
                        prompt=prompt, n_messages=1, tools=0, stream=False, input_tokens=len(prompt) // 4,
                        output_tokens=rng.randint(20, 200), max_tokens=256, temperature=0.0,
                    )  # fmt: skip
                day += 1


def _benchmark_prompt(ctx: _Ctx, pop: BenchmarkRuns, k: int, language: str) -> str:
    if pop.request_kind is None:
        return (
            f"Question {k + 1}: {_honest_text(ctx, None, language, 2)}\nLet's think step by step."
        )
    return _honest_text(ctx, pop.request_kind, language)


def benchmark(pop: BenchmarkRuns, ctx: _Ctx) -> None:
    rng = ctx.rng
    for i in range(pop.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(100, 1500) * DAY_S
        ip, asn, country = _address(rng, "research")
        language = _pick(rng, pop.languages)
        n = rng.randint(*pop.prompts)
        begin = rng.uniform(ctx.start, ctx.end - pop.duration_h * HOUR_S)
        step = pop.duration_h * HOUR_S / n
        for k in range(n):
            prompt = _benchmark_prompt(ctx, pop, k, language)
            ctx.emit(
                ts=begin + k * step + rng.uniform(0, step / 2), account_id=account, model=ctx.scenario.default_model,
                account_created_ts=created, billing_fingerprint=f"bill-{account}", source_ip=ip, asn=asn,
                country=country, user_agent=pop.user_agent, client_fingerprint=f"cfp-{account}", prompt=prompt,
                n_messages=1, tools=0, stream=False, input_tokens=len(prompt) // 4,
                output_tokens=rng.randint(100, 1200), max_tokens=2048, temperature=0.0,
            )  # fmt: skip


class _Operator:
    """A campaign's tooling: its generator schedules accounts and sessions, the operator
    shapes each request and disguises each session as the campaign's knobs ask.

    Every knob at its default draws nothing from the random stream.
    """

    def __init__(self, c: _Campaign, ctx: _Ctx) -> None:
        self.c, self.ctx, self.rng = c, ctx, ctx.rng
        self.agentic = c.sessions == "agentic"
        self.turns = c.agentic_turns if self.agentic else 1.0
        if c.pacing == "human" and not self.agentic:
            self.turns = c.session_turns
        self.billing = f"bill-{ctx.hexid(48)}" if c.payment == "shared" else None
        self.template = self.rng.randrange(1000) if c.one_template else None
        self.system = None
        if c.system_prompt:
            self.system = text.system_prompt(
                self.rng, c.system_prompt, half=ctx.half, language=c.language
            )
        self._sticky: dict[tuple[str, str], str] = {}  # (account, what) -> value kept for life

    def model(self, ts: float) -> str:
        return _model_for(self.ctx, ts, self.c.new_model_share, self.c.pivot_delay_h)

    def rate(self, per_s: float) -> float:
        """Sessions per second that send ``per_s`` requests per second."""
        return per_s * self.c.rate_factor / self.turns

    def ramp(self, begin: float, ts: float) -> float:
        return _ramp(ts, begin, self.c.ramp_h * HOUR_S) if self.c.ramp_h else 1.0

    def times(
        self,
        begin: float,
        end: float,
        per_s: float,
        intensity: Callable[[float], float] | None = None,
    ) -> Iterator[float]:
        """Session starts of one account between ``begin`` and ``end``."""
        if self.c.pacing == "human":
            per_s /= DIURNAL_MEAN * (1 - self.c.days_off)
            intensity = self._office_hours(begin, end)
        if self.c.ramp_h:
            intensity = _ramped(intensity, begin, self.c.ramp_h * HOUR_S)
        return _times(self.rng, begin, end, per_s, intensity)

    def _office_hours(self, begin: float, end: float) -> Callable[[float], float]:
        """One person's rhythm: the operator's zone give or take an hour, some days off."""
        tz = self.c.timezone_h + self.rng.uniform(-1, 1)
        days = range(int((end - begin) // DAY_S) + 2)
        off = {d for d in days if self.rng.random() < self.c.days_off}
        rhythm = diurnal(tz)

        def weight(ts: float) -> float:
            return 0.0 if int((ts - begin) // DAY_S) in off else rhythm(ts)

        return weight

    def session(self, ts: float, account: str, model: str, identity: dict[str, Any]) -> None:
        """One scheduled visit: a single request, or a human session or agent loop."""
        identity = self.disguise(account, identity)
        cap = 40 if self.agentic else 12
        turns = 1 if self.turns == 1 else _session_length(self.rng, self.turns, cap)
        task = ""
        for turn in range(turns):
            task = self.request(ts, turn, task, account, model, identity)
            if turn + 1 < turns:
                ts += self.rng.uniform(2, 30) if self.agentic else self.rng.uniform(20, 240)

    def request(
        self, ts: float, turn: int, task: str, account: str, model: str, identity: dict[str, Any]
    ) -> str:
        """One harvesting request; returns the task an agent loop keeps sending."""
        rng, c, ctx = self.rng, self.c, self.ctx
        capability = rng.choice(c.capabilities)
        if self.agentic and turn:
            prompt = _tool_loop_prompt(ctx, task, c.language)
        else:
            prompt = task = text.harvest_prompt(
                rng, capability, self.template, ctx.style, half=ctx.half, language=c.language,
                paraphrase=c.paraphrase,
            )  # fmt: skip
        max_tokens, temperature, stream = self._sampling()
        most = max_tokens or 8192  # harvesting wants long answers: most hit the limit
        ctx.emit(
            prompt=prompt, system_prompt=self.system, n_messages=1 + 2 * turn, max_tokens=max_tokens,
            temperature=temperature, input_tokens=len(prompt) // 4 + (TOOL_RESULT_TOKENS * turn if self.agentic else 0),
            output_tokens=most if rng.random() < 0.6 else rng.randint(min(1500, most), most),
            stream=stream, tools=self._tools(capability), ts=ts, account_id=account, model=model, **identity,
        )  # fmt: skip
        return task

    def _sampling(self) -> tuple[int | None, float | None, bool]:
        if self.c.params == "fixed":
            return 4096, 0.0, self.agentic
        rng = self.rng  # the habits of people, so that no parameter sets the campaign apart
        stream = self.agentic or rng.random() < 0.7
        return rng.choice(MAX_TOKENS_HABITS), rng.choice(TEMPERATURE_HABITS), stream

    def _tools(self, capability: str) -> int:
        if self.agentic:
            return self.rng.randint(4, 14)
        return self.rng.randint(3, 8) if capability == "tool_use" else 0

    def disguise(self, account: str, identity: dict[str, Any]) -> dict[str, Any]:
        """The session's identity fields after the infrastructure and payment knobs."""
        c, rng = self.c, self.rng
        if (c.proxy, c.pool, c.clients, c.payment) == ("native", "none", "native", "native"):
            return identity
        identity = dict(identity)
        if c.proxy != "native":
            identity["source_ip"], identity["asn"], identity["country"] = _address(rng, c.proxy)
        if c.pool == "reseller":  # the reseller's egress and agent, and its per-customer keys
            identity["source_ip"], identity["asn"], identity["country"] = _ip(rng, RESELLER)
            identity["user_agent"] = RESELLER_AGENT
            identity["client_fingerprint"] = self._kept(account, "cfp")
        if c.clients == "rotated":
            identity["user_agent"] = rng.choice(BROWSERS + SDKS)
            identity["client_fingerprint"] = f"cfp-{self.ctx.hexid(48)}"
        if c.payment == "shared":
            identity["billing_fingerprint"] = self.billing
        elif c.payment == "per_account":
            identity["billing_fingerprint"] = self._kept(account, "bill")
        return identity

    def _kept(self, account: str, what: str) -> str:
        key = (account, what)
        if key not in self._sticky:
            self._sticky[key] = f"{what}-{self.ctx.hexid(48)}"
        return self._sticky[key]


def _identity(
    created: float, billing: str, address: Address, agent: str, fingerprint: str
) -> dict[str, Any]:
    """A campaign account's request fields other than its id and model, in event order."""
    ip, asn, country = address
    return {
        "account_created_ts": created, "billing_fingerprint": billing, "source_ip": ip,
        "asn": asn, "country": country, "user_agent": agent, "client_fingerprint": fingerprint,
    }  # fmt: skip


def lockstep(c: LockstepCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    op = _Operator(c, ctx)
    begin = ctx.start + c.start_h * HOUR_S
    end = min(ctx.end, begin + c.duration_h * HOUR_S)
    billings = [f"bill-{ctx.hexid(48)}" for _ in range(c.billing_fingerprints)]
    range_third = rng.randrange(256)
    fingerprint = ctx.token("cfp-harvest-a", "cfp")
    members = []
    for i in range(c.accounts):
        address = _ip(rng, HOSTING[i % len(HOSTING)], fixed_third=range_third)
        created = begin - rng.uniform(0.2, 3) * DAY_S
        identity = _identity(
            created, billings[i % len(billings)], address, "python-httpx/0.27.0", fingerprint
        )
        members.append((ctx.account(i), identity))
    if c.pacing == "human":  # every account on its own rhythm: the synchronised tick is gone
        for account, identity in members:
            for ts in op.times(begin, end, op.rate(c.hourly_requests / HOUR_S)):
                op.session(ts, account, op.model(ts), identity)
        return
    # One scheduler ticks for every account at once: synchronised to within a few seconds.
    for tick in _times(rng, begin, end, op.rate(c.hourly_requests / HOUR_S)):
        for account, identity in members:
            if rng.random() < 0.9 * op.ramp(begin, tick):
                ts = tick + rng.uniform(0, c.jitter_s)
                op.session(ts, account, op.model(ts), identity)


def low_and_slow(c: LowAndSlowCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    op = _Operator(c, ctx)
    fingerprints = [f"cfp-{ctx.hexid(48)}" for _ in range(c.client_fingerprints)]
    for i in range(c.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(10, 60) * DAY_S  # aged accounts, bought or farmed
        address = _ip(rng, rng.choice(RESIDENTIAL + HOSTING))
        rate = rng.uniform(0.6, 1.0) * c.daily_requests / DAY_S
        for ts in op.times(ctx.start, ctx.end, op.rate(rate)):  # round the clock unless paced
            model = op.model(ts)
            billing = f"bill-{ctx.hexid(48)}"
            fingerprint = fingerprints[i % len(fingerprints)]
            op.session(
                ts, account, model, _identity(created, billing, address, SDKS[0], fingerprint)
            )


def hydra(c: HydraCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    op = _Operator(c, ctx)
    serial = 0
    for slot in range(c.accounts):  # ``accounts`` live at any time; each is replaced when it dies
        t = ctx.start + rng.uniform(0, c.lifetime_h) * HOUR_S - c.lifetime_h * HOUR_S
        while t < ctx.end:
            account = ctx.account(serial, suffix=f"-s{slot}")
            serial += 1
            born = max(t, ctx.start)
            dies = min(ctx.end, t + rng.uniform(0.7, 1.3) * c.lifetime_h * HOUR_S)
            created = born - rng.uniform(60, 1800)  # created minutes before first use
            for ts in op.times(born, dies, op.rate(c.hourly_requests / HOUR_S)):
                address = _ip(rng, RESELLER)
                model = op.model(ts)
                billing = f"bill-{ctx.hexid(48)}"
                identity = _identity(
                    created, billing, address, RESELLER_AGENT, f"cfp-{ctx.hexid(48)}"
                )
                op.session(ts, account, model, identity)
            t = dies  # replaced at once, or after the operator noticed the ban
            if c.replace_after_s:
                t += rng.expovariate(1 / c.replace_after_s)


def residential_mimic(c: ResidentialMimicCampaign, ctx: _Ctx) -> None:
    rng = ctx.rng
    op = _Operator(c, ctx)
    fingerprint = ctx.token("cfp-mimic-sdk", "cfp")
    for i in range(c.accounts):
        account = ctx.account(i)
        created = ctx.start - rng.uniform(3, 40) * DAY_S
        rate = rng.uniform(0.7, 1.3) * c.daily_requests / 3 / DAY_S / DIURNAL_MEAN
        for ts in op.times(ctx.start, ctx.end, rate * c.rate_factor, diurnal(c.timezone_h)):
            address = _address(rng, "residential")  # a fresh residential proxy per session
            task = ""
            for turn in range(rng.randint(2, 4)):
                agent = rng.choice(BROWSERS)
                identity = _identity(created, f"bill-{account}", address, agent, fingerprint)
                identity = op.disguise(account, identity)
                task = op.request(ts, turn, task, account, op.model(ts), identity)
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


def _house_style(scenario: Scenario, name: str) -> str:
    # Plain scenarios keep their historic styles (by group name); a suite draw's campaigns
    # get one per draw, so a tune draw's styles say nothing about a test draw's.
    seed = zlib.crc32(
        name.encode() if scenario.half is None else f"{scenario.seed}:{name}".encode()
    )
    return text.house_style(random.Random(seed), half=scenario.half)


def simulate(scenario: Scenario, progress: Callable[[str], None] | None = None) -> Traffic:
    """All events of the scenario sorted by ``ts`` (ties by ``event_id``), and every account's label."""
    traffic = Traffic()
    groups: list[tuple[_Group, str]] = [(p, "benign") for p in scenario.populations]
    groups += [(c, "malicious") for c in scenario.campaigns]
    for group, label in groups:
        if progress:
            progress(group.name)
        rng = random.Random(scenario.seed * 1_000_003 + zlib.crc32(group.name.encode()))
        style = _house_style(scenario, group.name) if label == "malicious" else ""
        _GENERATORS[group.kind](group, _Ctx(scenario, rng, group, label, traffic, style))  # type: ignore[attr-defined]
    end = scenario.start_ts + scenario.days * DAY_S
    traffic.events = [e for e in traffic.events if scenario.start_ts <= e["ts"] < end]
    traffic.events.sort(key=lambda e: (e["ts"], e["event_id"]))
    seen = {e["account_id"] for e in traffic.events}
    traffic.labels = {a: v for a, v in traffic.labels.items() if a in seen}
    return traffic
