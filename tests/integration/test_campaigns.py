"""Campaign linking against a real Redis, and two workers building one campaign through Kafka."""

from __future__ import annotations

import random
import time

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.io.campaign_store import CampaignStore, link_watermarks
from detector.metrics import Metrics
from detector.state.campaigns import AccountLinks
from tests.integration.helpers import TopicReader, account_event_counts, produce, wait_until
from tests.integration.test_service import RunningService

pytestmark = pytest.mark.integration


def _store(
    client: redis.Redis, settings: Settings, remember: int = 0, clock: list[float] | None = None
) -> CampaignStore:
    """``clock``: the wall clock as a one-item list the test moves (default: the real one)."""
    return CampaignStore(
        client,
        settings.redis.key_prefix,
        settings.campaigns,
        1000,
        Metrics(CollectorRegistry()),
        remember_accounts=remember,
        clock=time.monotonic if clock is None else lambda: clock[0],
    )


@pytest.fixture
def store(redis_settings: Settings, client: redis.Redis):
    return _store(client, redis_settings), client


def _link(account: str, *evidence: str, suspect: bool = True, ts: float = 100.0) -> AccountLinks:
    return AccountLinks(account, ts, suspect, 5, evidence)


def test_three_suspects_sharing_a_value_form_a_campaign(store) -> None:
    s, _ = store
    assert s.link([_link("a1", "net:10.0.0.0/24"), _link("a2", "net:10.0.0.0/24")]).campaigns == []
    [campaign] = s.link([_link("a3", "net:10.0.0.0/24", ts=200.0)]).campaigns
    assert campaign.members == 3 and sorted(campaign.new_members) == ["a1", "a2", "a3"]
    assert campaign.kinds == ("net",) and sorted(campaign.listed) == ["a1", "a2", "a3"]


def test_new_members_come_in_name_order(store) -> None:
    # Member alerts go out in this order: a Redis set's own order differs between servers.
    s, _ = store
    names = [f"m{random.randrange(10**6):06d}-{i}" for i in range(12)]
    [campaign] = s.link([_link(name, "bill:shared") for name in names]).campaigns
    assert campaign.new_members == sorted(names)


def test_honest_accounts_sharing_a_network_do_not(store) -> None:
    s, _ = store
    honest = [_link(f"h{i}", "net:10.9.9.0/24", "asnua:64500|ab", suspect=False) for i in range(50)]
    assert s.link(honest).campaigns == []


def test_batches_from_two_workers_grow_one_campaign_and_keep_its_id(store) -> None:
    s, _ = store
    [first] = s.link(
        [_link(f"p0-{i}", "tpl:beef") for i in range(3)]
    ).campaigns  # partition 0's worker
    [grown] = s.link(
        [_link(f"p1-{i}", "tpl:beef", ts=300.0) for i in range(3)]
    ).campaigns  # partition 1's
    assert grown.campaign_id == first.campaign_id and grown.members == 6
    # A second campaign that later shares evidence with the first merges into the older one.
    [other] = s.link([_link(f"q{i}", "cfp:zz", ts=400.0) for i in range(3)]).campaigns
    assert other.campaign_id != first.campaign_id
    [merged] = s.link([_link("bridge", "tpl:beef", "cfp:zz", ts=500.0)]).campaigns
    assert merged.campaign_id == first.campaign_id and merged.members == 10
    assert set(merged.kinds) == {"tpl", "cfp"}


def test_strong_evidence_attributes_unremarkable_accounts(store) -> None:
    s, _ = store
    s.link([_link("quiet", "bill:card-1", suspect=False)])
    [campaign] = s.link([_link(f"s{i}", "bill:card-1") for i in range(3)]).campaigns
    assert "quiet" in campaign.new_members and campaign.members == 4


def test_model_pivot_counts_and_source_mix(store) -> None:
    s, _ = store
    hour = 3600.0 * 500_000
    s.link(
        [_link(f"h{i}", "asnua:64500|gw", suspect=False, ts=hour) for i in range(6)]
    )  # honest customers
    members = [
        AccountLinks(
            f"c{i}", hour + 60, True, 10, ("asnua:64500|gw", "cfp:kit"), (("old", 5), ("new", 5))
        )
        for i in range(3)
    ]
    result = s.link(members)
    [campaign] = result.campaigns
    assert campaign.models == {"old": 15, "new": 15}
    assert campaign.population_models == {"old": 15, "new": 15}
    assert set(result.model_first_seen) == {"old", "new"}
    [mix] = result.sources
    assert mix.evidence == "asnua:64500|gw" and mix.campaign_accounts == 3 and mix.accounts == 9
    assert mix.campaign_requests == 30 and mix.requests == 60


def test_indices_are_capped_and_expire(store, redis_settings: Settings) -> None:
    s, client = store
    cap = redis_settings.campaigns.index_cap
    s.link([_link(f"x{i}", "net:10.1.1.0/24", ts=float(i)) for i in range(cap + 50)])
    key = f"{redis_settings.redis.key_prefix}cmp:{{c}}:ix:net:10.1.1.0/24"
    assert client.zcard(key) == cap
    assert (
        redis_settings.campaigns.singleton_ttl_s < client.ttl(key) <= redis_settings.campaigns.ttl_s
    )
    s.link([_link("lonely", "net:10.2.2.0/24")])  # a value one account used: gone soon
    lonely = f"{redis_settings.redis.key_prefix}cmp:{{c}}:ix:net:10.2.2.0/24"
    assert 0 < client.ttl(lonely) <= redis_settings.campaigns.singleton_ttl_s


def test_two_workers_on_different_partitions_build_one_campaign(service_settings: Settings) -> None:
    """Six harvesting accounts sharing a payment and a client fingerprint, spread over two
    partitions: the group stage's state is shared, so the two workers find one campaign."""
    prompt = ("Explain the reasoning you would use internally to answer this, as a numbered chain of "
              "thought, then give the answer. Question {n}: how many primes are below {n}?")  # fmt: skip
    events = [
        {"event_id": f"{a}-{i}", "ts": 1_767_225_600.0 + i * 60 + a, "account_id": f"acct-{a}", "model": "m",
         "billing_fingerprint": "card-shared", "client_fingerprint": "cfp-shared",
         "prompt": prompt.format(n=1000 * a + i), "n_messages": 1,
         "input_tokens": 60, "output_tokens": 4096, "max_tokens": 4096, "temperature": 0.0, "stream": False}
        for i in range(40) for a in range(6)
    ]  # fmt: skip
    # Six accounts are all the traffic: judge without waiting for a background.
    settings = service_settings.with_overrides(campaigns={"groups": {"background_min": 0}})
    with RunningService(settings) as one, RunningService(settings) as two:
        wait_until(
            lambda: all(w.metric("detector_assigned_partitions") == 1 for w in (one, two)),
            60,
            "the group to give each worker one of the two partitions",
        )
        produce(settings, events)
        wait_until(
            lambda: sum(account_event_counts(settings).values()) == len(events),
            60,
            "every event applied to its account",
        )
        assert (
            one.metric("detector_events_consumed_total") > 0
            and two.metric("detector_events_consumed_total") > 0
        )
    reader = TopicReader(settings, settings.kafka.alerts_topic)
    alerts = [orjson.loads(m.value) for m in reader.read_to_end(20, "alerts")]
    reader.close()
    accounts = {f"acct-{a}" for a in range(6)}
    announced = [a for a in alerts if a["subject_type"] == "campaign"]
    # Each worker may seed its own group; flagged groups sharing their profile join one
    # campaign, so every group's latest alert names the same one (the earliest group's id).
    final = {a["evidence"]["group"]: a["subject_id"] for a in announced}
    [cid] = set(final.values())
    # A campaign is announced again only once it has grown by `realert_growth`: when one
    # worker runs ahead of the other, its largest announcement may list fewer than six (3,
    # then 5). Both workers may announce it, each through its own producer: in either order.
    assert all(a["account_count"] >= settings.campaigns.groups.min_members for a in announced)
    assert all(set(a["accounts"]) <= accounts for a in announced)
    top = max(announced, key=lambda a: a["account_count"])
    if top["account_count"] == 6:
        assert set(top["accounts"]) == accounts
    # Every account is announced as a member of that campaign, whichever worker saw it (a
    # member alert names the campaign its group was in at the time: it or one of its groups).
    members = {a["subject_id"] for a in alerts if a.get("campaign_id") in {cid, *final}}
    assert members == accounts


def test_link_watermarks_only_move_forward(store) -> None:
    s, client = store
    s.link([_link("a1", "net:10.3.3.0/24")], {"q|0": 10, "q|1": 4})
    s.link([_link("a1", "net:10.3.3.0/24")], {"q|0": 7})  # a redelivered, older batch
    assert link_watermarks(client.execute_command(*s.watermarks_command())) == {"q|0": 10, "q|1": 4}


def _index_score(client: redis.Redis, settings: Settings, value: str, account: str) -> float | None:
    return client.zscore(f"{settings.redis.key_prefix}cmp:{{c}}:ix:{value}", account)


def test_a_value_indexed_lately_counts_traffic_only(client, redis_settings: Settings) -> None:
    wall = [0.0]
    s = _store(client, redis_settings, remember=100, clock=wall)
    refresh = redis_settings.campaigns.index_refresh_s
    s.link([_link("a1", "net:10.4.4.0/24", "asnua:64500|ua", ts=100.0)])
    [mix] = s.link(
        [_link("a1", "net:10.4.4.0/24", "asnua:64500|ua", ts=200.0)]
        + [_link(f"a{i}", "asnua:64500|ua", ts=200.0) for i in (2, 3)]
    ).sources
    # Not indexed again (its entry keeps the first time), yet counted and linked.
    assert _index_score(client, redis_settings, "net:10.4.4.0/24", "a1") == 100.0
    assert mix.requests == 20 and mix.campaign_accounts == 3
    # Past the refresh interval in event time and on the wall clock, it is indexed again.
    wall[0] += refresh + 1
    s.link([_link("a1", "net:10.4.4.0/24", ts=100.0 + refresh + 1)])
    assert _index_score(client, redis_settings, "net:10.4.4.0/24", "a1") == 100.0 + refresh + 1


def test_an_origin_indexed_lately_keeps_its_keys_alive(client, redis_settings: Settings) -> None:
    """A marked origin only adds traffic; its keys got their TTLs when it was indexed, and a
    key Redis lost in between is made again with one."""
    s = _store(client, redis_settings, remember=100)
    base = f"{redis_settings.redis.key_prefix}cmp:{{c}}"
    s.link([_link("o1", "range:10.7.0.0/16", ts=100.0)])
    s.link([_link("o1", "range:10.7.0.0/16", ts=200.0)])
    src, accounts = f"{base}:src:range:10.7.0.0/16", f"{base}:sa:range:10.7.0.0/16"
    assert client.hget(src, "requests") == "10" and client.pfcount(accounts) == 1
    assert 0 < client.ttl(src) <= redis_settings.campaigns.ttl_s
    assert 0 < client.ttl(accounts) <= redis_settings.campaigns.ttl_s
    client.delete(src)
    s.link([_link("o1", "range:10.7.0.0/16", ts=300.0)])
    assert client.hget(src, "requests") == "5"
    assert 0 < client.ttl(src) <= redis_settings.campaigns.ttl_s


def test_a_backlog_is_not_indexed_again_before_the_wall_clock_moves_on(
    client, redis_settings: Settings
) -> None:
    """Entries expire by the wall clock: hours of event time drained in a minute keep them."""
    wall = [0.0]
    s = _store(client, redis_settings, remember=100, clock=wall)
    refresh = redis_settings.campaigns.index_refresh_s
    s.link([_link("c1", "net:10.6.6.0/24", ts=100.0)])
    wall[0] += 60.0
    s.link([_link("c1", "net:10.6.6.0/24", ts=100.0 + 10 * refresh)])
    assert _index_score(client, redis_settings, "net:10.6.6.0/24", "c1") == 100.0
    wall[0] += refresh  # and the other way round: event time must move on too
    s.link([_link("c1", "net:10.6.6.0/24", ts=100.0 + refresh / 2)])
    assert _index_score(client, redis_settings, "net:10.6.6.0/24", "c1") == 100.0
    s.link([_link("c1", "net:10.6.6.0/24", ts=100.0 + 11 * refresh)])
    assert _index_score(client, redis_settings, "net:10.6.6.0/24", "c1") == 100.0 + 11 * refresh


def test_an_account_turning_suspect_is_indexed_at_once(client, redis_settings: Settings) -> None:
    s = _store(client, redis_settings, remember=100)
    s.link([_link("b1", "net:10.5.5.0/24", suspect=False, ts=100.0)])
    assert _index_score(client, redis_settings, "net:10.5.5.0/24", "b1") is None
    s.link([_link("b1", "net:10.5.5.0/24", ts=110.0)])
    assert _index_score(client, redis_settings, "net:10.5.5.0/24", "b1") == 110.0
    # Not a suspect for a batch, then one again: its suspect's entries are still in place.
    s.link([_link("b1", "net:10.5.5.0/24", suspect=False, ts=120.0)])
    s.link([_link("b1", "net:10.5.5.0/24", ts=130.0)])
    assert _index_score(client, redis_settings, "net:10.5.5.0/24", "b1") == 110.0


def test_remembering_what_was_indexed_changes_no_campaign(
    client: redis.Redis, redis_settings: Settings
) -> None:
    """The same batches, linked with and without the worker remembering its index entries:
    batch by batch the same campaigns, members and origins; at the end the same indices."""
    rng = random.Random(7)
    pools = {
        f"r{i}": [f"{k}:{i % 4}-{rng.randrange(3)}" for k in ("net", "cfp", "tpl")]
        for i in range(40)
    }
    batches = []
    for b in range(40):
        batch = []
        for account in rng.sample(sorted(pools), 12):
            evidence = (*sorted(rng.sample(pools[account], 2)), "range:10.0")
            suspect = rng.random() < 0.7
            batch.append(AccountLinks(account, 100.0 * b, suspect, 3, evidence))
        batches.append(batch)
    runs = []
    for remember, prefix in ((0, "plain:"), (1000, "remember:")):
        settings = redis_settings.with_overrides(
            redis={"key_prefix": redis_settings.redis.key_prefix + prefix}
        )
        s = _store(client, settings, remember)
        seen = []
        for batch in batches:
            result = s.link(batch)
            seen.append(
                (
                    sorted(
                        (c.campaign_id, c.members, c.kinds, sorted(c.new_members))
                        for c in result.campaigns
                    ),
                    sorted((m.evidence, m.requests, m.campaign_requests) for m in result.sources),
                )
            )
        base = f"{settings.redis.key_prefix}cmp:{{c}}:"
        indices = {
            key.removeprefix(base): sorted(client.zrange(key, 0, -1))
            for key in client.scan_iter(f"{base}[ia]x:*")
        }
        runs.append((seen, indices))
    assert runs[0] == runs[1]
    assert any(campaigns for campaigns, _ in runs[0][0])  # the batches did form campaigns
