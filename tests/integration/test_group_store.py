"""The group stage's Redis scripts and store against a real Redis: indexing, seeding,
join-if-covers (the Lua coverage equals ``grouping.coverage``), and keys spread over shards."""

from __future__ import annotations

import random

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

from detector.campaigns.grouping import coverage
from detector.config import Settings
from detector.io.group_store import GroupStore, MemberUpdate
from detector.metrics import Metrics

pytestmark = pytest.mark.integration
FACTS = [100.0, 200.0, 50.0, 7, 0.5, 0.6]


@pytest.fixture
def store(redis_settings: Settings, client: redis.Redis) -> GroupStore:
    return GroupStore(
        client,
        redis_settings.redis.key_prefix,
        redis_settings.campaigns,
        Metrics(CollectorRegistry()),
    )


def _summary(values: list[str]) -> str:
    return orjson.dumps({"v": values, "f": FACTS}).decode()


def test_holders_are_counted_and_a_value_seeds_once_it_has_enough(store: GroupStore) -> None:
    values = ["cfp:c1", "habit:h1"]
    index = [(v, "a1", 100.0, _summary(values)) for v in values]
    reply = store.send_index(index, values, ["a1"], {"m1": 100.0}, 100.0).result()
    assert reply.values["cfp:c1"].df == 1 and reply.values["cfp:c1"].seeds is None
    assert reply.active == 1 and reply.model_first_seen == {"m1": 100.0}
    index = [(v, a, 110.0, _summary(values)) for a in ("a2", "a3") for v in values]
    reply = store.send_index(index, values, ["a2", "a3"], {"m1": 110.0}, 110.0).result()
    stat = reply.values["cfp:c1"]
    assert stat.df == 3 and stat.owner == ""
    assert stat.seeds is not None and sorted(stat.seeds) == ["a1", "a2", "a3"]
    assert stat.seeds["a2"] == {"v": values, "f": FACTS}
    assert reply.model_first_seen == {"m1": 100.0}  # the first sighting stays
    # Not again until the holders grew by seed_growth.
    again = store.send_index([], values, [], {}, 120.0).result()
    assert again.values["cfp:c1"].seeds is None


def test_holders_leave_a_value_after_the_window(
    store: GroupStore, redis_settings: Settings
) -> None:
    window = redis_settings.campaigns.groups.window_s
    store.send_index([("cfp:c1", "old", 0.0, _summary(["cfp:c1"]))], [], [], {}, 0.0).result()
    reply = store.send_index(
        [("cfp:c1", "new", window + 10.0, _summary(["cfp:c1"]))], ["cfp:c1"], [], {}, window + 10.0
    ).result()
    assert reply.values["cfp:c1"].df == 1


def test_an_account_joins_only_if_it_covers_the_profile(store: GroupStore) -> None:
    profile = {"cfp:c1": 2.0, "habit:h1": 1.0, "bhv:1d|limit|-": 1.0}
    members = [
        MemberUpdate("cmp-g1", a, ["cfp:c1", "habit:h1"], FACTS, {"m1": 3}) for a in ("a1", "a2")
    ]
    [report] = store.send_update([("cmp-g1", profile, 100.0)], members).result()
    assert report.members == 2 and sorted(report.joined) == ["a1", "a2"]
    assert sorted(report.pending) == ["a1", "a2"] and report.table is not None
    assert report.profile == profile and report.models == {"m1": 6}
    assert report.models_now == {"m1": 6}  # the newest hour alone, for a pivot's window
    # Owners registered on the value shards: the next index reports them.
    owners = store.send_index([], list(profile), [], {}, 100.0).result()
    assert {v: s.owner for v, s in owners.values.items()} == dict.fromkeys(profile, "cmp-g1")
    # 0.5 of the weight: refused; 0.75: admitted. Creating again changes nothing.
    half = MemberUpdate("cmp-g1", "a3", ["cfp:c1"], FACTS)
    most = MemberUpdate("cmp-g1", "a4", ["cfp:c1", "bhv:1d|limit|-"], FACTS)
    [report] = store.send_update([("cmp-g1", {"x:y": 9.0}, 200.0)], [half, most]).result()
    assert report.joined == ["a4"] and report.members == 3


def test_lua_coverage_equals_the_pure_one(store: GroupStore) -> None:
    rng = random.Random(5)
    pool = [f"{k}:{i}" for k in ("cfp", "net", "open", "bhv") for i in range(4)]
    for trial in range(30):
        profile = {v: round(rng.uniform(0.1, 5.0), 3) for v in rng.sample(pool, 5)}
        held = rng.sample(pool, rng.randint(0, 8))
        gid = f"cmp-t{trial}"
        expected = coverage(
            {tuple(v.split(":")) for v in held},
            {tuple(v.split(":")): w for v, w in profile.items()},
        )
        [report] = store.send_update(
            [(gid, profile, 0.0)], [MemberUpdate(gid, "a", held, FACTS)]
        ).result()
        assert (report.joined == ["a"]) == (expected >= 0.6), (profile, held, expected)


def test_keys_spread_over_the_shards(
    store: GroupStore, client: redis.Redis, redis_settings: Settings
) -> None:
    values = [f"cfp:c{i}" for i in range(200)]
    store.send_index(
        [(v, "a1", 1.0, _summary([v])) for v in values], values, ["a1"], {}, 1.0
    ).result()
    prefix = redis_settings.redis.key_prefix
    tags = {key.split("{")[1].split("}")[0] for key in client.scan_iter(f"{prefix}cv:*")}
    assert tags == {f"cv{n:02d}" for n in range(redis_settings.campaigns.groups.value_shards)}
