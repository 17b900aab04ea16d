"""The group-first campaign stage run over a whole simulated draw in hindsight (issue 30).

Reads a draw's ``events.jsonl`` and ``labels.json`` (what ``detector eval`` leaves in its
output), folds every account's evidence with ``detector.campaigns.evidence``, weighs the
values with ``weights`` and groups the accounts with ``grouping.cluster``; then scores the
groups against the labels: which share of each campaign family lands in a campaign-majority
group, how many honest accounts such groups hold, and how cleanly groups follow campaigns.

This is how the grouping rules are chosen on the ``tune`` suite before the stage streams:
in hindsight, with every account's whole history, so it is an upper bound on what the
streaming stage can group.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from detector.campaigns.evidence import Value, behaviour_value, summary, tally
from detector.campaigns.grouping import Group, GroupRules, cluster
from detector.campaigns.judge import JudgeRules, MemberFacts, Verdict, judge, population_of
from detector.campaigns.weights import WeightRules, weight
from detector.config import FeatureSettings, Settings
from detector.decode import decode_record
from detector.events import QueryEvent, RawRecord
from detector.features import EventFeatures, extract_batch, intent_model
from detector.features.intent import HARVEST_MASK, IntentTagger
from detector_lab.evaluation.scoring import adjusted_rand_index

CHUNK = 4096


@dataclass
class AccountFacts:
    """What the stage knows of one account after the whole draw."""

    counts: Counter[Value] = field(default_factory=Counter)
    events: int = 0
    first: float = 0.0
    last: float = 0.0
    created: float | None = None
    harvest: int = 0  # events with a harvesting intent tag
    at_limit: int = 0  # events whose output ran to max_tokens
    log_output: float = 0.0  # sum of log(output tokens + 1)

    @property
    def member(self) -> MemberFacts:
        return MemberFacts(
            self.first,
            self.last,
            self.created or 0.0,
            self.events,
            self.harvest / self.events,
            self.at_limit / self.events,
            math.exp(self.log_output / self.events) - 1.0,
        )

    def add(self, f: EventFeatures) -> None:
        if not self.events:
            self.first, self.created = f.ts, f.created_ts
        self.events += 1
        self.last = f.ts
        self.harvest += bool(f.tags & HARVEST_MASK)
        self.at_limit += f.at_limit
        self.log_output += math.log(f.tokens_out + 1)


def read_facts(events_path: Path, settings: Settings | None = None) -> dict[str, AccountFacts]:
    """Every account's facts from a draw's events (in file order, which is event time)."""
    s = settings or Settings()
    tagger = intent_model.tagger(s.intent)
    facts: dict[str, AccountFacts] = defaultdict(AccountFacts)
    chunk: list[QueryEvent] = []
    with events_path.open("rb") as lines:
        for n, line in enumerate(lines):
            event = decode_record(RawRecord("file", 0, n, None, line.rstrip(b"\n")))
            if isinstance(event, QueryEvent):
                chunk.append(event)
            if len(chunk) >= CHUNK:
                _fold(chunk, facts, s.features, tagger)
                chunk = []
    _fold(chunk, facts, s.features, tagger)
    return dict(facts)


def evidence_of(facts: AccountFacts) -> frozenset[Value]:
    """The account's summary with its behaviour bucket."""
    m = facts.member
    bucket = behaviour_value(m.first - m.created if m.created else None, m.at_limit, m.harvest)
    values = summary(facts.counts, facts.events)
    return values | {bucket} if bucket else values


def _fold(
    events: list[QueryEvent],
    facts: dict[str, AccountFacts],
    settings: FeatureSettings,
    tagger: IntentTagger,
) -> None:
    for f in extract_batch(events, settings, tagger):
        account = facts[f.account_id]
        account.add(f)
        tally([f], account.counts)


def weigh(summaries: Mapping[str, frozenset[Value]], rules: WeightRules) -> dict[Value, float]:
    """Each value's weight from how many of the accounts hold it."""
    df: Counter[Value] = Counter(v for s in summaries.values() for v in s)
    active = len(summaries)
    return {v: weight(v[0], n, active, rules) for v, n in df.items()}


FLAGGED = frozenset({"medium", "high", "critical"})


@dataclass(frozen=True)
class GroupingScore:
    """How the groups of one draw and their verdicts follow its labels."""

    # family -> (accounts, in a campaign-majority group, in a group judged medium or above)
    families: dict[str, tuple[int, int, int]]
    honest: dict[str, tuple[int, int]]  # honest family -> (accounts, in a flagged group)
    campaign_groups: int
    honest_groups: int
    mixed_groups: int  # flagged groups more than 5% honest
    adjusted_rand_index: float  # campaign accounts: true group against found group

    def lines(self) -> list[str]:
        flagged = sum(f for _, f in self.honest.values())
        total = sum(n for n, _ in self.honest.values())
        out = [
            f"groups: {self.campaign_groups} campaign-majority, {self.honest_groups} honest-majority, "
            f"{self.mixed_groups} flagged groups over 5% honest; honest accounts flagged "
            f"{flagged}/{total}; ARI {self.adjusted_rand_index:.3f}"
        ]
        for family, (n, grouped, hit) in sorted(self.families.items()):
            out.append(f"  {family:28s} {n:5d} grouped {grouped / n:6.1%} flagged {hit / n:6.1%}")
        for family, (n, hit) in sorted(self.honest.items()):
            if hit:
                out.append(f"  honest {family:21s} {n:5d} flagged {hit / n:6.1%}")
        return out


def score_groups(
    judged: Iterable[tuple[Group, Verdict]], labels: Mapping[str, Mapping[str, str]]
) -> GroupingScore:
    """Score groups and their verdicts against ``labels`` (account -> label, group, family)."""
    found: dict[str, str] = {}
    flagged: set[str] = set()
    campaign_groups = honest_groups = mixed = 0
    for i, (g, verdict) in enumerate(judged):
        bad = sum(labels[a]["label"] == "malicious" for a in g.members)
        if verdict.severity in FLAGGED:
            flagged |= g.members
            mixed += len(g.members) - bad > 0.05 * len(g.members)
        if bad * 2 <= len(g.members):
            honest_groups += 1
            continue
        campaign_groups += 1
        for a in g.members:
            found[a] = f"g{i}"
    families: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    honest: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    truth, predicted = [], []
    for account, info in labels.items():
        if info["label"] != "malicious":
            cell = honest[info["family"]]
            cell[0] += 1
            cell[1] += account in flagged
            continue
        cell = families[info["family"]]
        cell[0] += 1
        cell[1] += account in found
        cell[2] += account in flagged
        truth.append(info["group"])
        predicted.append(found.get(account, f"alone:{account}"))
    return GroupingScore(
        {k: (v[0], v[1], v[2]) for k, v in families.items()},
        {k: (v[0], v[1]) for k, v in honest.items()},
        campaign_groups,
        honest_groups,
        mixed,
        adjusted_rand_index(truth, predicted),
    )


def probe(
    facts: Mapping[str, AccountFacts],
    labels: Mapping[str, Mapping[str, str]],
    weight_rules: WeightRules,
    group_rules: GroupRules,
    judge_rules: JudgeRules,
) -> tuple[list[tuple[Group, Verdict]], GroupingScore]:
    """Group a draw's accounts in hindsight, judge every group, score against the labels."""
    summaries = {a: evidence_of(f) for a, f in facts.items()}
    weights = weigh(summaries, weight_rules)
    groups = cluster(summaries, weights, group_rules)
    grouped = set().union(*(g.members for g in groups))
    # The background the groups are compared with: the accounts in no group.
    population = population_of([f.member for a, f in facts.items() if a not in grouped])
    judged = [
        (g, judge([facts[a].member for a in sorted(g.members)], population, judge_rules))
        for g in groups
    ]
    return judged, score_groups(judged, {a: labels[a] for a in facts if a in labels})


def read_labels(draw_dir: Path) -> dict[str, dict[str, str]]:
    accounts: dict[str, dict[str, str]] = json.loads((draw_dir / "labels.json").read_text())[
        "accounts"
    ]
    return accounts
