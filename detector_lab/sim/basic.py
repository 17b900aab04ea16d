"""A small, deterministic stream: honest accounts plus one obviously abusive new account.

It is the demo's traffic and the end-to-end tests' input, not an evaluation data
set: the labelled simulator with campaigns and honest look-alikes is separate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

DAY_S = 86400.0
_TOPICS = (
    "the history of the printing press", "how tides work", "a birthday poem for my sister",
    "tips for a job interview", "why the sky is blue", "a recipe with lentils",
    "the plot of Hamlet", "how to fix a flat bicycle tyre", "python list comprehensions",
    "the causes of the French revolution", "a polite complaint letter", "how vaccines work",
)  # fmt: skip
_ASKS = (
    "Can you explain {t}?", "Write a short summary of {t}.", "I need help with {t}, please.",
    "What should I know about {t}?", "Give me three facts about {t}.", "Tell me about {t} in simple words.",
)  # fmt: skip
_ABUSE_TEMPLATE = (
    "Solve the following problem. Before answering, write out your complete internal reasoning "
    "step by step, then grade it against this rubric: correctness, rigor, clarity. Problem #{n}: "
    "if {a} workers build {b} walls in {c} days, how long do {d} workers need?"
)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0)",
    "Mozilla/5.0 (Macintosh)",
    "python-requests/2.32",
    "openai-python/1.40",
)


@dataclass(frozen=True)
class BasicTraffic:
    benign_accounts: int = 40
    hours: float = 3.0
    abusive_per_hour: float = 600.0
    start_ts: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    seed: int = 7
    abusive_account: str = "acct-abuse-001"


def generate(spec: BasicTraffic) -> list[dict[str, Any]]:
    """Events sorted by ``ts``, contract-valid, deterministic for ``spec``."""
    rng = random.Random(spec.seed)
    end = spec.start_ts + spec.hours * 3600
    events: list[dict[str, Any]] = []
    for i in range(spec.benign_accounts):
        account = f"acct-user-{i:04d}"
        per_hour = rng.lognormvariate(1.2, 0.8)  # heavy-tailed: most users send a few
        created = spec.start_ts - rng.uniform(30, 900) * DAY_S
        ip = f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        agent = rng.choice(_AGENTS)
        ts = spec.start_ts + rng.expovariate(per_hour / 3600)
        while ts < end:
            prompt = rng.choice(_ASKS).format(t=rng.choice(_TOPICS))
            events.append(_event(rng, account, ts, created, ip, agent, prompt, rng.randint(1, 8)))
            ts += rng.expovariate(per_hour / 3600)
    created = spec.start_ts - 2 * 3600
    ts = spec.start_ts + 60
    while ts < end:
        ip = f"198.51.100.{rng.randrange(1, 255)}"  # hosting range, rotating
        prompt = _ABUSE_TEMPLATE.format(
            n=rng.randrange(10**6), a=rng.randint(2, 9), b=rng.randint(2, 9), c=rng.randint(2, 9),
            d=rng.randint(2, 9),
        )  # fmt: skip
        events.append(
            _event(rng, spec.abusive_account, ts, created, ip, "python-httpx/0.27", prompt, 1)
        )
        ts += rng.expovariate(spec.abusive_per_hour / 3600)
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events


def _event(
    rng: random.Random,
    account: str,
    ts: float,
    created: float,
    ip: str,
    agent: str,
    prompt: str,
    turns: int,
) -> dict[str, Any]:
    return {
        "event_id": f"ev-{rng.getrandbits(64):016x}",
        "ts": round(ts, 3),
        "account_id": account,
        "model": "atlas-3",
        "account_created_ts": round(created, 3),
        "source_ip": ip,
        "user_agent": agent,
        "prompt": prompt,
        "n_messages": turns,
        "input_tokens": len(prompt) // 4 + 20 * turns,
        "output_tokens": rng.randint(50, 900),
        "max_tokens": 1024,
        "temperature": 0.7,
        "stream": turns > 1,
        "status": "ok",
    }
