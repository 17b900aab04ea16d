"""The group stage, one batch at a time: fold evidence, index it, seed and join groups,
judge them, and say what to publish.

``GroupStep.run`` reads as its stages, in data-flow order:

1. ``_summaries``: each account's events fold into its stored evidence tally (part of its
   state, written with it); its summary is its most frequent values and behaviour bucket;
2. ``store.send_index`` (value shards): accounts whose summary changed, or was indexed long
   ago, are added to their values' holders; every value of the batch comes back with its
   holders count and owning group; a value that may seed a group brings its holders'
   summaries. The batch's states are final here: they are encoded meanwhile;
3. ``_seed``: weights from holders counts; ``grouping.form`` on each seed's holders;
4. ``store.send_update`` (group shards): new groups are created, each account is offered to
   the groups its values belong to and admitted if it covers the profile (checked in Redis);
5. ``_verdicts``: groups due for judgement are judged against the background (accounts in
   no group, kept by this worker); then alerts for new members, changed groups and moves to
   a new model, with the commands that record them, written with the batch's state.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import xxhash

from detector import alerting
from detector.campaigns.evidence import (
    FAMILY,
    KIND_NAMES,
    Value,
    behaviour_value,
    fold,
    parse,
    summary,
)
from detector.campaigns.grouping import Group, GroupRules, form, profile_of
from detector.campaigns.judge import (
    JudgeRules,
    MemberFacts,
    Population,
    Verdict,
    judge,
    population_of,
    shows,
    synchrony,
)
from detector.campaigns.linking import Campaigns, LinkRules
from detector.campaigns.sources import mixes, source_finding
from detector.campaigns.weights import WeightRules, weight
from detector.config import Settings
from detector.detectors import Finding
from detector.detectors.campaign import model_pivot
from detector.events import Alert
from detector.features import EventFeatures
from detector.io.group_store import GroupReport, GroupStore, IndexReply, MemberUpdate
from detector.state.account import AccountState
from detector.state.profile import INDEX, lockstep_bands

HOUR_S: Final = 3600
CANDIDATES: Final = 4  # groups an account is offered to per batch at most
REMEMBERED: Final = 200_000  # accounts and values a worker remembers (indexing, holders counts)
FLAGGED: Final = frozenset({"medium", "high", "critical"})


def wire(v: Value) -> str:
    return f"{v[0]}:{v[1]}"


def unwire(s: str) -> Value:
    kind, _, value = s.partition(":")
    return (kind, value)


def member_facts(state: AccountState) -> list[float]:
    """What the judge reads of an account, from its state (``judge.MemberFacts`` order)."""
    means = state.profile.means
    return [
        state.first_seen,
        state.last_seen,
        state.created_ts,
        state.events,
        round(means[INDEX["harvest"]], 4),
        round(means[INDEX["at_limit"]], 4),
        round(math.exp(means[INDEX["log_out"]]) - 1.0, 1),
    ]


def member(facts: list[Any]) -> MemberFacts:
    """A member's facts as ``member_facts`` wrote them, or as a group record stores them:
    the member's values seventh, the output eighth (absent when recorded before outputs
    were kept: unknown, 0)."""
    first, last, created, events, harvest, at_limit = facts[:6]
    output = facts[-1] if len(facts) > 6 and not isinstance(facts[-1], list) else 0.0
    return MemberFacts(first, last, created, int(events), harvest, at_limit, output)


def evidence_of(state: AccountState, timing_events: int) -> frozenset[Value]:
    """The account's summary, behaviour bucket and (from ``timing_events`` events on, when
    its moments mean something) lockstep bands."""
    first, _, created, _, harvest, at_limit, _ = member_facts(state)
    bucket = behaviour_value(first - created if created else None, at_limit, harvest)
    values = summary(parse(state.evidence), state.events)
    if state.events >= timing_events:
        values |= {("lock", band) for band in lockstep_bands(state.profile)}
    return values | {bucket} if bucket else values


def shared_reason(members: int, profile: Mapping[str, float], rho: float) -> str:
    """What a group's members share, by kind, heaviest first."""
    weights: dict[str, float] = {}
    for value, w in profile.items():
        kind = value.partition(":")[0]
        weights[kind] = weights.get(kind, 0.0) + w
    kinds = sorted(weights, key=lambda k: (-weights[k], k))
    names = [KIND_NAMES.get(k, k) for k in kinds]
    shared = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    return (
        f"{members} accounts share {shared or 'evidence'} (each member holds at least "
        f"{rho:.0%} of the group's weighted evidence, over two or more families)"
    )


def shared_values(profile: Mapping[str, float], indexed: IndexReply) -> list[dict[str, Any]]:
    """The profile's heaviest values for an alert: kind, value, weight, holders if known.
    Content values are hashes already; no prompt text is in any value."""
    top = sorted(profile.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    out = []
    for value, w in top:
        kind, _, text = value.partition(":")
        stat = indexed.values.get(value)
        out.append(
            {"kind": kind, "value": text, "weight": round(w, 3), "df": stat.df if stat else None}
        )
    return out


class Weights:
    """Values' weights from the holders counts this worker heard of lately, computed when
    asked (a batch needs few of the values it remembers)."""

    def __init__(self, df: Mapping[str, int], active: int, rules: WeightRules) -> None:
        self._df, self._active, self._rules = df, max(active, 1), rules

    def of(self, value: str) -> float:
        df = self._df.get(value)
        if df is None:
            return 0.0
        return weight(value.partition(":")[0], df, self._active, self._rules)

    def of_values(self, summaries: Iterable[frozenset[Value]]) -> dict[Value, float]:
        out: dict[Value, float] = {}
        for values in summaries:
            for v in values:
                if v not in out:
                    out[v] = self.of(wire(v))
        return out


class Background:
    """Accounts in no group, as this worker saw them lately: what groups are compared with.

    A statistic, not shared state: each worker sees a random share of the accounts (by
    partition), and a restarted worker rebuilds it from the traffic."""

    def __init__(self, size: int) -> None:
        self._facts: deque[MemberFacts] = deque(maxlen=size)
        self._added: OrderedDict[str, float] = OrderedDict()
        self._size = size
        self._population: Population | None = None

    def add(self, account: str, facts: list[float]) -> None:
        """Counted once per account and hour of event time."""
        last = facts[1]
        if last - self._added.get(account, -HOUR_S) < HOUR_S:
            return
        self._added[account] = last
        self._added.move_to_end(account)
        while len(self._added) > self._size:
            self._added.popitem(last=False)
        self._facts.append(member(facts))
        self._population = None

    @property
    def size(self) -> int:
        return len(self._facts)

    def population(self) -> Population:
        if self._population is None:
            self._population = population_of(self._facts)
        return self._population


@dataclass
class StepResult:
    alerts: list[Alert] = field(default_factory=list)
    commands: list[tuple[Any, ...]] = field(default_factory=list)


class GroupStep:
    def __init__(
        self, store: GroupStore, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        s = settings.campaigns.groups
        self.store = store
        self.settings = settings
        self.clock = clock
        self.weight_rules = WeightRules(
            min_df=s.min_df,
            ramp_df=s.ramp_df,
            cap=s.cap,
            cap_share=s.cap_share,
            cap_min=s.cap_min,
            kind_weight=dict.fromkeys(FAMILY, 1.0) | s.kind_weights,
        )
        self.group_rules = GroupRules(
            rho=s.rho,
            value_cap=s.value_cap,
            kind_cap=s.kind_cap,
            family_cap=s.family_cap,
            support=s.support,
            min_members=s.min_members,
        )
        self.judge_rules = JudgeRules(
            young_ratio=s.young_ratio,
            limit_share=s.limit_share,
            limit_ratio=s.limit_ratio,
            intent_share=s.intent_share,
            intent_ratio=s.intent_ratio,
            long_ratio=s.long_ratio,
            sync_share=s.sync_share,
            sync_members=s.sync_members,
            medium_indicators=s.medium_indicators,
            cohort=frozenset(s.cohort_indicators),
            high_indicators=s.high_indicators,
            high_members=s.high_members,
            critical_members=s.critical_members,
            min_events=s.min_events,
        )
        self.campaigns = Campaigns(LinkRules(overlap=s.link_overlap, min_shared=s.link_min_shared))
        self.background = Background(s.background_accounts)
        # Until the background holds this many accounts (a worker just started), groups are
        # not judged: against an empty background every indicator would hold.
        self.min_background = s.background_min
        self._indexed: OrderedDict[str, tuple[int, float]] = OrderedDict()  # summary hash, ts
        self._df: OrderedDict[str, int] = OrderedDict()  # holders counts lately reported
        self._members: OrderedDict[str, str] = OrderedDict()  # account -> its group, lately
        # Requests per model, per hour, of accounts in no known group: the background a
        # group's move to a new model is compared with (as the judge compares its members).
        self._traffic: dict[int, Counter[str]] = {}

    def run(
        self,
        applied: Mapping[str, list[EventFeatures]],
        states: Mapping[str, AccountState],
        meanwhile: Callable[[], Any],
    ) -> StepResult:
        """The batch's group alerts and the commands that record them; ``meanwhile`` runs
        while the values are indexed (the states are final by then)."""
        summaries, facts = self._summaries(applied, states)
        index, due, ts = self._due(summaries, facts, applied)
        models = self._count_traffic(applied)
        # Values reported on: those just indexed, and those of accounts in no known group
        # (their owners are the groups they are offered to).
        report = {
            wire(v)
            for account, values in summaries.items()
            if account in due or account not in self._members
            for v in values
        }
        trip = self.store.send_index(index, report, list(applied), models, ts)
        try:
            meanwhile()
        except BaseException:
            trip.discard()
            raise
        indexed = trip.result()
        self._remember({a: summaries[a] for a in due}, applied, indexed)
        weights = Weights(self._df, indexed.active, self.weight_rules)
        created, seeds = self._seed(indexed, weights)
        updates = self._offers(summaries, facts, applied, indexed, created, seeds)
        reports = self.store.send_update(
            [
                (gid, {wire(v): round(w, 4) for v, w in g.profile.items()}, ts)
                for gid, g in created.items()
            ],
            updates,
        ).result()
        return self._verdicts(reports, facts, indexed, weights)

    def _summaries(
        self, applied: Mapping[str, list[EventFeatures]], states: Mapping[str, AccountState]
    ) -> tuple[dict[str, frozenset[Value]], dict[str, list[float]]]:
        summaries, facts = {}, {}
        for account, feats in applied.items():
            state = states[account]
            fold(state.evidence, feats)
            summaries[account] = evidence_of(state, self.settings.behaviour.min_events)
            facts[account] = member_facts(state)
        return summaries, facts

    def _due(
        self,
        summaries: Mapping[str, frozenset[Value]],
        facts: Mapping[str, list[float]],
        applied: Mapping[str, list[EventFeatures]],
    ) -> tuple[list[tuple[str, str, float, str]], set[str], float]:
        """(value, account, ts, summary) for accounts whose summary changed or is due again,
        those accounts, and the batch's latest event time; the summary is a JSON record of
        the account's values and facts, for seeding."""
        refresh = self.settings.campaigns.groups.index_refresh_s
        index: list[tuple[str, str, float, str]] = []
        due: set[str] = set()
        latest = 0.0
        for account, values in summaries.items():
            ts = applied[account][-1].ts
            latest = max(latest, ts)
            key = hash(values)
            seen = self._indexed.get(account)
            if seen is not None and seen[0] == key and ts - seen[1] < refresh:
                continue
            text = orjson.dumps(
                {"v": sorted(wire(v) for v in values), "f": facts[account]}
            ).decode()
            index.extend((wire(v), account, ts, text) for v in sorted(values))
            due.add(account)
        return index, due, latest

    def _remember(
        self,
        summaries: Mapping[str, frozenset[Value]],
        applied: Mapping[str, list[EventFeatures]],
        indexed: IndexReply,
    ) -> None:
        for account, values in summaries.items():
            self._indexed[account] = (hash(values), applied[account][-1].ts)
            self._indexed.move_to_end(account)
        for value, stat in indexed.values.items():
            self._df[value] = stat.df
            self._df.move_to_end(value)
        for memory in (self._indexed, self._df):
            while len(memory) > REMEMBERED:
                memory.popitem(last=False)

    def _count_traffic(self, applied: Mapping[str, list[EventFeatures]]) -> dict[str, float]:
        """Requests per model and hour of accounts in no known group (the background a pivot
        is compared with: a campaign's own move, or another's, is not "everyone's"); the
        batch's models with their first request time, from every account."""
        first: dict[str, float] = {}
        for account, feats in applied.items():
            background = account not in self._members
            for f in feats:
                if background:
                    self._traffic.setdefault(int(f.ts // HOUR_S), Counter())[f.model] += 1
                if f.ts < first.get(f.model, float("inf")):
                    first[f.model] = f.ts
        if self._traffic:
            newest = max(self._traffic)
            for hour in [h for h in self._traffic if h < newest - 2]:
                del self._traffic[hour]
        return first

    def _seed(
        self, indexed: IndexReply, weights: Weights
    ) -> tuple[dict[str, Group], dict[str, tuple[list[str], list[float]]]]:
        """New groups from the values whose holders came back for seeding, and their members'
        values and facts as the seeds carried them."""
        created: dict[str, Group] = {}
        seeds: dict[str, tuple[list[str], list[float]]] = {}
        taken: set[str] = set()
        for value in sorted(indexed.values):
            stat = indexed.values[value]
            if stat.seeds is None or weights.of(value) <= 0:
                continue
            # Accounts this worker knows to be members already are left to their groups.
            candidates = {
                a: frozenset(unwire(v) for v in record["v"])
                for a, record in stat.seeds.items()
                if a not in taken and a not in self._members
            }
            if len(candidates) < self.group_rules.min_members:
                continue
            group = form(candidates, weights.of_values(candidates.values()), self.group_rules)
            if group is None:
                continue
            gid = "cmp-" + xxhash.xxh64_hexdigest(orjson.dumps([wire(v) for v in group.key]))[:12]
            created[gid] = group
            taken |= group.members
            for a in group.members:
                seeds[a] = (stat.seeds[a]["v"], stat.seeds[a]["f"])
        return created, seeds

    def _offers(
        self,
        summaries: Mapping[str, frozenset[Value]],
        facts: Mapping[str, list[float]],
        applied: Mapping[str, list[EventFeatures]],
        indexed: IndexReply,
        created: Mapping[str, Group],
        seeds: Mapping[str, tuple[list[str], list[float]]],
    ) -> list[MemberUpdate]:
        """Each batch account offered to the groups its values belong to, and new groups'
        other members with the values and facts their seeds carried."""
        updates = []
        for gid, group in created.items():
            for account in sorted(group.members - summaries.keys()):
                held, seen = seeds[account]
                updates.append(MemberUpdate(gid, account, held, seen))
        for account, values in summaries.items():
            wired = sorted(wire(v) for v in values)
            groups = [g for g, group in created.items() if account in group.members]
            known = self._members.get(account)
            if known and known not in groups:
                groups.append(known)
            for v in wired:
                owner = indexed.values[v].owner if v in indexed.values else ""
                if owner and owner not in groups:
                    groups.append(owner)
            models = dict(Counter(f.model for f in applied[account]))
            for gid in groups[:CANDIDATES]:
                updates.append(MemberUpdate(gid, account, wired, facts[account], models))
        return updates

    def _verdicts(
        self,
        reports: list[GroupReport],
        facts: Mapping[str, list[float]],
        indexed: IndexReply,
        weights: Weights,
    ) -> StepResult:
        result = StepResult()
        now = self.clock()
        grouped: set[str] = set()
        for r in reports:
            members_now = set(r.table) if r.table is not None else set(r.joined)
            for account in members_now | set(r.joined):
                self._members[account] = r.group
                self._members.move_to_end(account)
            grouped |= members_now | set(r.joined)
            born = float(r.record.get("created") or r.latest)
            if r.record.get("campaign"):
                self.campaigns.learn(
                    r.group, born, r.record["campaign"], float(r.record["campaign_ts"])
                )
            verdict = self._verdict(r, result)
            self._drift(r, weights, result)
            if verdict.severity in FLAGGED:
                campaign = self.campaigns.flagged(r.group, born, r.profile)
                self._alert(r, campaign, verdict, facts, indexed, result, now)
        while len(self._members) > REMEMBERED:
            self._members.popitem(last=False)
        for account, f in facts.items():
            if account not in grouped and account not in self._members:
                self.background.add(account, f)
        return result

    def _drift(self, r: GroupReport, weights: Weights, result: StepResult) -> None:
        """A judged group's profile re-formed from its members' values, when members joined
        since the last judgement: a group seeded by a few accounts holds their rare values,
        which later members lack."""
        if r.table is None or r.profile is None or r.members == int(r.record.get("judged_n") or 0):
            return
        summaries = [frozenset(unwire(v) for v in f[6]) for f in r.table.values() if len(f) > 6]
        profile = profile_of(summaries, weights.of_values(summaries), self.group_rules)
        if profile is None:
            return
        wired = {wire(v): w for v, w in profile.items()}
        if set(wired) != set(r.profile):
            result.commands.extend(self.store.profile_commands(r.group, wired))

    def _verdict(self, r: GroupReport, result: StepResult) -> Verdict:
        if r.table is not None and self.background.size >= self.min_background:
            members = [member(f) for f in r.table.values() if len(f) >= 6]
            bands = [
                [v for v in f[6] if v.startswith("lock:")] for f in r.table.values() if len(f) > 6
            ]
            verdict = judge(
                members, self.background.population(), self.judge_rules, synchrony(bands)
            )
            lead = shared_reason(len(members), r.profile or {}, self.group_rules.rho)
            verdict = dataclasses.replace(verdict, reasons=(lead, *verdict.reasons))
            result.commands.append(
                self.store.verdict_command(
                    r.group, verdict.severity, verdict.score, verdict.held, verdict.reasons
                )
            )
            return verdict
        severity = r.record.get("severity") or "low"
        held = tuple(orjson.loads(r.record["held"])) if r.record.get("held") else ()
        reasons = tuple(orjson.loads(r.record["reasons"])) if r.record.get("reasons") else ()
        return Verdict(severity, float(r.record.get("score") or 0.0), {}, held, reasons)

    def _alert(
        self,
        r: GroupReport,
        campaign: str,
        verdict: Verdict,
        facts: Mapping[str, list[float]],
        indexed: IndexReply,
        result: StepResult,
        now: float,
    ) -> None:
        """Alerts for a flagged group, under its campaign's id: its new members, the group
        when it grew, changed severity or joined a campaign, and a move to a new model. Only
        members that show the group's most telling indicator themselves (``judge.shows``) are
        flagged; the others (a mixed source's honest customers) are counted, and reconsidered
        as they change."""
        s = self.settings.campaigns
        population = self.background.population()
        table = r.table or {}

        def flagged(account: str) -> bool:
            f = table.get(account) or facts.get(account)
            return f is not None and shows(member(f), verdict.held, population, self.judge_rules)

        first = float(r.record.get("first") or r.latest)
        members = r.members
        listed = [a for a in sorted(table) if flagged(a)]
        reasons = verdict.reasons or (f"{members} accounts share evidence as a group",)
        if r.table is not None and len(listed) < members:
            reasons = (
                *reasons,
                f"{members - len(listed)} of {members} members share the group's evidence but "
                "do not show its most telling indicator themselves (a mixed source's other "
                "customers): not flagged",
            )
        finding = Finding(
            "coordinated_cluster",
            verdict.score,
            verdict.severity,
            reasons,
            {
                "members": members,
                "members_flagged": len(listed) if r.table is not None else None,
                "group": r.group,
                "campaign_groups": self.campaigns.groups(campaign),
                "shared_values": shared_values(r.profile or {}, indexed),
                "indicators": verdict.indicators,
                "held": list(verdict.held),
                "created_ts": float(r.record.get("created") or first),
                "last_ts": r.latest,
            },
        )
        announce = [a for a in sorted(r.pending) if flagged(a)]
        for account in announce:
            result.alerts.append(alerting.member_alert(account, campaign, finding, r.latest, now))
        if announce:
            result.commands.append(self.store.announced_command(r.group, announce))
        alerted_n = int(float(r.record.get("alerted_n") or 0))
        changed = r.table is not None and (
            r.record.get("alerted_severity") != verdict.severity
            or members >= alerted_n * s.realert_growth
            or r.record.get("campaign", r.group) != campaign
        )
        if changed:
            result.alerts.append(
                alerting.campaign_alert(
                    campaign,
                    finding,
                    trigger=f"{r.group}:{members}:{verdict.severity}",
                    accounts=listed[: self.settings.alerting.max_accounts_listed],
                    members=len(listed),
                    ts=r.latest,
                    first_seen=first,
                    events=int(float(r.record.get("events") or 0)),
                    emitted_at=now,
                )
            )
            result.commands.append(
                self.store.alerted_command(
                    r.group, members, verdict.severity, campaign, self.campaigns.created(campaign)
                )
            )
            self._sources(r, campaign, listed, result, now)
        self._pivot(r, campaign, finding, listed, indexed, result, now)

    def _sources(
        self, r: GroupReport, campaign: str, listed: list[str], result: StepResult, now: float
    ) -> None:
        """The group's network sources with their mix, alerted with the group: a reseller's
        egress says how many of its accounts are the campaign's, so it is not blocked whole."""
        table = r.table or {}
        flagged_values = [table[a][6] for a in listed if len(table[a]) > 6]
        s = self.settings.campaigns
        for mix in mixes(r.profile or {}, flagged_values, self._df, s.groups.cap):
            found = source_finding(mix, campaign, s)
            if found is not None:
                result.alerts.append(
                    alerting.source_alert(
                        mix.value,
                        found,
                        trigger=f"{r.group}:{r.members}",
                        campaign_accounts=mix.campaign_accounts,
                        requests=0,  # counted in accounts: the index holds no requests
                        ts=r.latest,
                        emitted_at=now,
                    )
                )

    def _pivot(
        self,
        r: GroupReport,
        campaign: str,
        base: Finding,
        listed: list[str],
        indexed: IndexReply,
        result: StepResult,
        now: float,
    ) -> None:
        """A group moving a large share of its traffic to a newly released model, judged on
        its newest hour when that hour holds ``pivot_min_requests`` requests (a move shows
        within the hour, not diluted by the hour before it), else on its last two hours."""
        s = self.settings.campaigns
        population: Counter[str] = Counter()
        for counts in self._traffic.values():
            population.update(counts)
        recent = sum(r.models_now.values()) >= s.pivot_min_requests
        models = r.models_now if recent else r.models
        pivoted = set(orjson.loads(r.record.get("pivoted") or "[]"))
        found = model_pivot(
            models,
            population,
            indexed.model_first_seen,
            r.latest,
            pivoted,
            r.members,
            s,
            base,
            hours=1 if recent else 2,
            compared="accounts in no group",
        )
        if found is None:
            return
        model, finding = found
        result.alerts.append(
            alerting.campaign_alert(
                campaign,
                finding,
                trigger=model,
                accounts=listed[: self.settings.alerting.max_accounts_listed],
                members=len(listed) if r.table is not None else r.members,
                ts=r.latest,
                first_seen=float(r.record.get("first") or r.latest),
                events=sum(models.values()),
                emitted_at=now,
            )
        )
        result.commands.append(self.store.pivoted_command(r.group, sorted(pivoted | {model})))


__all__ = ["GroupStep", "StepResult"]
