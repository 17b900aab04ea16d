"""AccountStore against a real Redis and a real Redis Cluster: round trips, atomic
compare-and-set, expiry, size."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.cluster import RedisCluster

from detector.config import FeatureSettings, Settings
from detector.events import QueryEvent
from detector.features import extract
from detector.features.intent import IntentTagger
from detector.io.account_store import AccountStore
from detector.io.roundtrip import RoundTrip, connect
from detector.metrics import Metrics
from detector.state.account import apply_event

pytestmark = pytest.mark.integration


def _feats(n: int, account: str = "acct-1", start_offset: int = 0, ips: int = 3) -> list:
    return [
        extract(
            QueryEvent(
                f"e{start_offset + i}",
                1000.0 + i,
                account,
                "m",
                offset=start_offset + i,
                source_ip=f"10.0.0.{i % ips}",
            ),
            FeatureSettings(),
            IntentTagger({}),
        )
        for i in range(n)
    ]


@pytest.fixture(params=["redis", "cluster"])
def redis_settings(request: pytest.FixtureRequest, redis_settings: Settings) -> Settings:
    """Every test here on one Redis, then on a Redis Cluster."""
    if request.param == "redis":
        return redis_settings
    url = request.getfixturevalue("redis_cluster_url")
    return redis_settings.with_overrides(redis={"url": url, "cluster": True})


def _in_use(client: Any) -> int:
    """Connections taken from the client's pools and not given back (every node's, on a cluster)."""
    if isinstance(client, RedisCluster):
        pools = [client.get_redis_connection(n).connection_pool for n in client.get_nodes()]
    else:
        pools = [client.connection_pool]
    return sum(len(pool._in_use_connections) for pool in pools)


@pytest.fixture
def store(redis_settings: Settings):
    client = connect(redis_settings.redis, binary=True)
    registry = CollectorRegistry()
    yield (
        AccountStore(client, redis_settings.redis, redis_settings.state, Metrics(registry)),
        client,
        registry,
    )
    client.close()


def _apply(loaded, feats, settings: Settings) -> list:
    return [apply_event(loaded.states[f.account_id], f, settings.state) for f in feats]


def test_load_apply_save_round_trip(store, redis_settings: Settings) -> None:
    s, _, registry = store
    feats = _feats(10)
    loaded = s.load(f.account_id for f in feats)
    snaps = _apply(loaded, feats, redis_settings)
    assert [snap.distinct.ips for snap in snaps][:4] == [1, 2, 3, 3]
    assert s.save(loaded) == []

    again = s.load(f.account_id for f in feats)  # the same events redelivered
    state = again.states["acct-1"]
    assert state.events == 10
    assert _apply(again, feats, redis_settings) == [None] * 10
    assert registry.get_sample_value("detector_redis_roundtrip_seconds_count", {"op": "load"}) == 2


def test_extra_commands_ride_along_in_the_same_round_trips(store, redis_settings: Settings) -> None:
    s, client, registry = store
    other = f"{redis_settings.redis.key_prefix}other"
    loaded = s.load((f.account_id for f in _feats(2)), [("GET", other)])
    assert loaded.extra == [None]
    _apply(loaded, _feats(2), redis_settings)
    s.save(loaded, [("SET", other, b"x")])
    assert client.get(other) == b"x"
    assert registry.get_sample_value("detector_redis_roundtrip_seconds_count", {"op": "save"}) == 1


def test_save_refuses_when_account_changed_meanwhile(store, redis_settings: Settings) -> None:
    s, _, _ = store
    feats = _feats(3)
    first = s.load(f.account_id for f in feats)
    second = s.load(
        f.account_id for f in feats[:2]
    )  # another worker read the same state, applied less
    _apply(first, feats, redis_settings)
    _apply(second, feats[:2], redis_settings)
    assert s.save(first) == []
    assert s.save(second) == ["acct-1"]  # compare-and-set on the watermark refused it
    assert s.load(f.account_id for f in feats).states["acct-1"].events == 3


def test_a_write_retried_after_its_reply_was_lost_is_accepted(
    store, redis_settings: Settings
) -> None:
    s, _, _ = store
    feats = _feats(3)
    loaded = s.load(f.account_id for f in feats)
    _apply(loaded, feats, redis_settings)
    assert s.save(loaded) == []
    assert s.save(loaded) == []  # the same write again: not a conflict
    assert s.load(f.account_id for f in feats).states["acct-1"].events == 3


def test_keys_expire_and_stay_small(store, redis_settings: Settings) -> None:
    s, client, _ = store
    feats = _feats(200, ips=50)
    loaded = s.load(f.account_id for f in feats)
    _apply(loaded, feats, redis_settings)
    s.save(loaded)
    key = s.key("acct-1")
    assert 0 < client.ttl(key) <= redis_settings.state.ttl_s
    assert client.memory_usage(key) < 1024, "one account's state"


def test_script_cache_loss_is_recovered(store, redis_settings: Settings) -> None:
    s, client, _ = store
    client.script_flush()
    feats = _feats(2)
    loaded = s.load(f.account_id for f in feats)
    _apply(loaded, feats, redis_settings)
    assert s.save(loaded) == []
    assert s.load(f.account_id for f in feats).states["acct-1"].events == 2


def test_a_state_this_worker_wrote_is_not_decoded_again(store, redis_settings: Settings) -> None:
    s, _, _ = store
    loaded = s.load(["acct-1"])
    _apply(loaded, _feats(3), redis_settings)
    s.save(loaded)
    assert s.load(["acct-1"]).states["acct-1"] is loaded.states["acct-1"]


def test_a_state_another_worker_changed_is_loaded_from_redis(
    store, redis_settings: Settings
) -> None:
    s, client, _ = store
    metrics = Metrics(CollectorRegistry())
    other = AccountStore(client, redis_settings.redis, redis_settings.state, metrics)
    feats = _feats(5)
    mine = s.load(["acct-1"])
    _apply(mine, feats[:2], redis_settings)
    s.save(mine)
    theirs = other.load(["acct-1"])  # the partition moved to another worker
    _apply(theirs, feats[2:], redis_settings)
    assert other.save(theirs) == []
    again = s.load(["acct-1"]).states["acct-1"]  # ... and back
    assert again is not mine.states["acct-1"]
    assert again.events == 5


def test_a_state_changed_but_not_written_is_loaded_from_redis(
    store, redis_settings: Settings
) -> None:
    s, _, _ = store
    feats = _feats(4)
    loaded = s.load(["acct-1"])
    _apply(loaded, feats[:2], redis_settings)
    s.save(loaded)
    failed = s.load(["acct-1"])
    _apply(failed, feats[2:], redis_settings)  # the batch fails before its write, and is retried
    retried = s.load(["acct-1"]).states["acct-1"]
    assert retried.events == 2
    assert _apply(s.load(["acct-1"]), feats[2:], redis_settings)[0] is not None


def test_an_expired_state_starts_afresh(store, redis_settings: Settings) -> None:
    s, client, _ = store
    loaded = s.load(["acct-1"])
    _apply(loaded, _feats(3), redis_settings)
    s.save(loaded)
    client.delete(s.key("acct-1"))
    assert s.load(["acct-1"]).states["acct-1"].events == 0


@pytest.mark.parametrize("cache_accounts", [0, 2])
def test_the_cache_holds_at_most_cache_accounts(
    redis_settings: Settings, cache_accounts: int
) -> None:
    settings = redis_settings.with_overrides(state={"cache_accounts": cache_accounts})
    client = connect(settings.redis, binary=True)
    s = AccountStore(client, settings.redis, settings.state, Metrics(CollectorRegistry()))
    accounts = ["acct-1", "acct-2", "acct-3"]
    loaded = s.load(accounts)
    for a in accounts:
        _apply(loaded, _feats(2, account=a), settings)
    s.save(loaded)
    again = s.load(accounts)
    kept = [a for a in accounts if again.states[a] is loaded.states[a]]
    assert kept == accounts[3 - cache_accounts :]  # the least recently loaded went first
    assert [again.states[a].events for a in accounts] == [2, 2, 2]
    client.close()


def _trip(client, commands, observed: list[float]) -> RoundTrip:
    return RoundTrip(client, commands, (), observed.append)


def test_a_round_trip_is_read_after_work_done_meanwhile(store) -> None:
    _, client, _ = store
    observed: list[float] = []
    trip = _trip(client, [("SET", "rt:a", b"1"), ("INCR", "rt:a"), ("GET", "rt:a")], observed)
    assert client.get("rt:a") == b"2"  # sent at once: Redis ran it while the caller went on
    assert trip.replies() == [b"OK", 2, b"2"]
    assert len(observed) == 1 and observed[0] > 0
    assert not _in_use(client)  # the connection went back


def test_a_round_trip_whose_connection_dropped_runs_again(store) -> None:
    _, client, _ = store
    trip = _trip(client, [("INCR", "rt:b"), ("GET", "rt:b")], [])
    trip._legs[0].conn.disconnect()  # the connection drops after the send, its replies unread
    assert trip.replies() == [2, b"2"]  # run again as a whole: its commands may run twice
    assert not _in_use(client)


def test_a_round_trip_raises_an_error_reply_and_can_be_given_up(store) -> None:
    _, client, _ = store
    client.set("rt:c", b"text")
    with pytest.raises(redis.ResponseError):
        _trip(client, [("INCR", "rt:c")], []).replies()
    _trip(client, [("GET", "rt:c")], []).discard()
    assert not _in_use(client)
    assert client.get("rt:c") == b"text"
