"""Flagged groups joined into campaigns.

One operator's accounts fall into several groups: one per ISP its residential proxies exit
from, one per client build. Each is dense and judged on its own, and on-call should see one
campaign, not twenty. A campaign is the flagged groups whose profiles share at least
``overlap`` of each one's weight over ``min_shared`` values or more. Only flagged groups
link, so an honest group never joins a campaign through a popular client it shares.

Pure, and per worker: the step records a group's campaign in the group's record and teaches
it back here when another worker (or this one, restarted) reads it, so a campaign keeps one
id, its earliest group's.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LinkRules:
    overlap: float = 0.5  # shared values carry at least this share of each profile's weight
    min_shared: int = 2  # ... and there are at least this many of them
    remembered: int = 20_000  # flagged groups' profiles a worker keeps (the oldest go first)


def overlap(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[int, float]:
    """Values two profiles share, and the smaller of the shares of their weight on them.

    >>> overlap({"cfp:x": 1.0, "net:a": 1.0}, {"cfp:x": 1.0, "net:b": 3.0})
    (1, 0.25)
    """
    shared = a.keys() & b.keys()
    total_a, total_b = sum(a.values()), sum(b.values())
    if not shared or total_a <= 0 or total_b <= 0:
        return len(shared), 0.0
    return len(shared), min(
        sum(a[v] for v in shared) / total_a, sum(b[v] for v in shared) / total_b
    )


class Campaigns:
    """Union-find over flagged groups; a campaign's id is its earliest group's. Links are
    kept for every flagged group seen (few: flagged groups, not accounts); profiles for the
    ``remembered`` latest."""

    def __init__(self, rules: LinkRules) -> None:
        self.rules = rules
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}  # campaign -> its groups, for campaigns of two or more
        self._born: dict[str, tuple[float, str]] = {}  # group -> (created, id): roots are earliest
        self._profiles: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._holders: dict[str, set[str]] = defaultdict(set)  # value -> flagged groups

    def campaign(self, group: str) -> str:
        root = group
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while group != root:  # path compression
            self._parent[group], group = root, self._parent[group]
        return root

    def created(self, campaign: str) -> float:
        return self._born.get(campaign, (0.0, campaign))[0]

    def groups(self, campaign: str) -> int:
        """How many groups this worker knows in ``campaign``."""
        return self._size.get(self.campaign(campaign), 1)

    def learn(self, group: str, created: float, campaign: str, campaign_created: float) -> None:
        """A link recorded in the group's record (by any worker)."""
        self._born.setdefault(group, (created, group))
        self._born.setdefault(campaign, (campaign_created, campaign))
        self._union(group, campaign)

    def flagged(self, group: str, created: float, profile: Mapping[str, float] | None) -> str:
        """A flagged group with its profile (None: as last given): linked to every flagged
        group whose profile overlaps it enough; its campaign."""
        self._born.setdefault(group, (created, group))
        if profile:
            self._forget(group)
            self._profiles[group] = dict(profile)
            for v in profile:
                self._holders[v].add(group)
            others = {g for v in profile for g in self._holders[v]} - {group}
            for other in sorted(others):
                shared, share = overlap(profile, self._profiles[other])
                if shared >= self.rules.min_shared and share >= self.rules.overlap:
                    self._union(group, other)
            while len(self._profiles) > self.rules.remembered:
                self._forget(next(iter(self._profiles)))
        return self.campaign(group)

    def _forget(self, group: str) -> None:
        for v in self._profiles.pop(group, {}):
            self._holders[v].discard(group)
            if not self._holders[v]:
                del self._holders[v]

    def _union(self, a: str, b: str) -> None:
        ra, rb = self.campaign(a), self.campaign(b)
        if ra != rb:
            keep, other = sorted((ra, rb), key=lambda g: self._born.get(g, (float("inf"), g)))
            self._parent[other] = keep
            self._size[keep] = self._size.get(keep, 1) + self._size.pop(other, 1)
