"""The account store on a real Redis Cluster of three masters, side by side with one Redis:
the same operations give the same states, replies and refusals, in the batch's order."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.cluster import RedisCluster

from detector.config import FeatureSettings, Settings
from detector.embedded import EmbeddedRedisCluster
from detector.events import QueryEvent
from detector.features import EventFeatures, extract
from detector.features.intent import IntentTagger
from detector.io.account_store import AccountStore, LoadedBatch
from detector.io.roundtrip import RoundTrip, connect
from detector.metrics import Metrics
from detector.state.account import apply_event

pytestmark = pytest.mark.integration

SIDES = ("redis", "cluster")


@pytest.fixture
def settings(redis_settings: Settings, redis_cluster_url: str) -> dict[str, Settings]:
    """One Redis and the cluster, under the same key prefix."""
    cluster = redis_settings.with_overrides(redis={"url": redis_cluster_url, "cluster": True})
    return {"redis": redis_settings, "cluster": cluster}


@pytest.fixture
def clients(settings: dict[str, Settings]) -> Iterator[dict[str, Any]]:
    made = {side: connect(settings[side].redis, binary=True) for side in SIDES}
    yield made
    for client in made.values():
        client.close()


def _store(
    client: Any, settings: Settings, registry: CollectorRegistry | None = None
) -> AccountStore:
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    return AccountStore(client, settings.redis, settings.state, metrics)


def _events(accounts: list[str], rounds: int, first_offset: int = 0) -> list[EventFeatures]:
    """``rounds`` events per account, interleaved in the accounts' order."""
    out = []
    for r in range(rounds):
        for i, account in enumerate(accounts):
            offset = first_offset + r * len(accounts) + i
            event = QueryEvent(
                f"e{offset}",
                1000.0 + offset,
                account,
                "m",
                offset=offset,
                source_ip=f"10.0.{i % 7}.{r}",
            )
            out.append(extract(event, FeatureSettings(), IntentTagger({})))
    return out


def _apply(loaded: LoadedBatch, feats: list[EventFeatures], settings: Settings) -> None:
    for f in feats:
        apply_event(loaded.states[f.account_id], f, settings.state)


def _accounts(n: int, seed: int, name: str = "acct") -> list[str]:
    """``n`` account ids in a shuffled order, so the batch's order is not the slots'."""
    accounts = [f"{name}-{i:04d}" for i in range(n)]
    random.Random(seed).shuffle(accounts)
    return accounts


def _spread_over_every_master(client: RedisCluster, keys: list[str]) -> bool:
    return {client.get_node_from_key(k).name for k in keys} == {
        n.name for n in client.get_primaries()
    }


def test_the_cluster_forms_and_answers(redis_cluster_url: str) -> None:
    client = RedisCluster.from_url(redis_cluster_url)
    try:
        primaries = {n.name for n in client.get_primaries()}
        assert len(primaries) >= 3
        assert client.cluster_info()["cluster_state"] == "ok"
        keys = [f"answers:{i}" for i in range(60)]
        assert _spread_over_every_master(client, keys)
        for i, key in enumerate(keys):
            client.set(key, i)
        assert [int(client.get(k)) for k in keys] == list(range(60))
        client.delete(*keys)
    finally:
        client.close()


def test_an_embedded_cluster_stops_every_node_on_exit() -> None:
    with EmbeddedRedisCluster() as cluster:
        ports = [node.port for node in cluster.nodes]
        with redis.Redis.from_url(cluster.url) as client:
            assert client.cluster("INFO")["cluster_size"] == "3"
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _batches(client: Any, settings: Settings, accounts: list[str]) -> dict[str, Any]:
    """A worker's two batches over ``accounts``, the first written in the second's load round
    trip (as the pipeline does), then the second saved: what each step gave back."""
    registry = CollectorRegistry()
    store = _store(client, settings, registry)
    side_key = f"{settings.redis.key_prefix}side"
    first = _events(accounts, 3)
    loaded = store.load(f.account_id for f in first)  # repeats, in the batch's order
    seen: dict[str, Any] = {"first_order": list(loaded.states)}
    seen["first_events"] = [s.events for s in loaded.states.values()]
    _apply(loaded, first, settings)
    store.encode(loaded)

    second_accounts = accounts[::2] + [f"new-{i}" for i in range(20)]
    second = _events(second_accounts, 2, first_offset=len(first))
    trip = store.send_load(
        (f.account_id for f in second),
        reads=[("GET", side_key)],
        write=loaded,
        write_extra=[("SET", side_key, b"x")],
    )
    again = trip.result()
    seen["second_order"] = list(again.states)
    seen["second_states"] = {a: s.to_bytes() for a, s in again.states.items()}
    seen["second_watermarks"] = again.loaded_watermarks
    seen["conflicts"] = again.conflicts
    seen["extra"] = again.extra
    _apply(again, second, settings)
    seen["refused"] = store.save(again)

    fresh = _store(client, settings)  # nothing cached: every value decoded from Redis
    final = fresh.load(accounts + [f"new-{i}" for i in range(20)] + ["never-seen"])
    seen["final"] = {a: s.to_bytes() for a, s in final.states.items()}
    seen["final_events"] = {a: s.events for a, s in final.states.items()}
    seen["round_trips"] = {
        op: registry.get_sample_value("detector_redis_roundtrip_seconds_count", {"op": op})
        for op in ("load", "save")
    }
    return seen


def test_a_batch_over_every_master_loads_and_saves_as_on_one_redis(
    settings: dict[str, Settings], clients: dict[str, Any]
) -> None:
    accounts = _accounts(300, seed=1)
    keys = [_store(clients["cluster"], settings["cluster"]).key(a) for a in accounts]
    assert _spread_over_every_master(clients["cluster"], keys)

    seen = {side: _batches(clients[side], settings[side], accounts) for side in SIDES}

    assert seen["cluster"] == seen["redis"]
    one = seen["redis"]
    assert one["first_order"] == accounts and one["first_events"] == [0] * 300
    assert one["conflicts"] == [] and one["refused"] == [] and one["extra"] == [b"x"]
    events = one["final_events"]
    # 3 events in the first batch, 2 more in the second for every other account
    assert [events[a] for a in accounts[:4]] == [5, 3, 5, 3]
    assert events["new-0"] == 2 and events["never-seen"] == 0
    assert one["round_trips"] == {"load": 2.0, "save": 1.0}


def _refusals(client: Any, settings: Settings, accounts: list[str]) -> tuple[list[str], list[str]]:
    """Two workers load the same accounts; one applies two events to a third of them and
    writes first, the other one event to every account, so its compare-and-set is refused
    for that third: as ``save`` reports it, then as the pipelined write of a load does."""
    taken = set(accounts[::3])
    feats = _events(accounts, 2)
    out = []
    for via_load in (False, True):
        ours = settings.with_overrides(
            redis={"key_prefix": f"{settings.redis.key_prefix}{via_load}:"}
        )
        first, second = _store(client, ours), _store(client, ours)
        theirs, mine = first.load(accounts), second.load(accounts)
        _apply(theirs, [f for f in feats if f.account_id in taken], ours)
        _apply(mine, feats[: len(accounts)], ours)
        assert first.save(theirs) == []
        if via_load:
            out.append(second.send_load(["other"], write=mine).result().conflicts)
        else:
            out.append(second.save(mine))
    return out[0], out[1]


def test_a_refused_write_is_reported_as_on_one_redis(
    settings: dict[str, Settings], clients: dict[str, Any]
) -> None:
    accounts = _accounts(90, seed=2, name="cas")
    refused = {side: _refusals(clients[side], settings[side], accounts) for side in SIDES}
    expected = [a for a in accounts if a in set(accounts[::3])]  # in the batch's order
    assert refused["cluster"] == refused["redis"] == (expected, expected)


def test_a_cluster_round_trip_reaches_every_master_before_its_replies_are_read(
    settings: dict[str, Settings], clients: dict[str, Any]
) -> None:
    client = clients["cluster"]
    prefix = settings["cluster"].redis.key_prefix
    keys = [f"{prefix}rt:{i}" for i in range(30)]
    assert _spread_over_every_master(client, keys)
    commands: list[tuple[Any, ...]] = [("SET", k, str(i)) for i, k in enumerate(keys)]
    commands += [("GET", k) for k in keys]
    observed: list[float] = []
    trip = RoundTrip(client, commands, (), observed.append)
    assert len(trip._legs) == 3  # one connection per master, each written at once
    assert [client.get(k) for k in keys] == [str(i).encode() for i in range(30)]
    assert trip.replies() == [b"OK"] * 30 + [str(i).encode() for i in range(30)]
    assert len(observed) == 1


def _move_slot(cluster: EmbeddedRedisCluster, key: str) -> str:
    """Reshard ``key``'s slot, with its keys, to another master, as ``redis-cli --cluster
    reshard`` does; the new master's name."""
    with RedisCluster.from_url(cluster.url) as client:
        slot = client.keyslot(key)
        source_port = client.get_node_from_key(key).port
    nodes = {n.port: redis.Redis(port=n.port) for n in cluster.nodes}
    try:
        target_port = next(port for port in nodes if port != source_port)
        source, target = nodes[source_port], nodes[target_port]
        source_id, target_id = source.cluster("MYID"), target.cluster("MYID")
        target.cluster("SETSLOT", slot, "IMPORTING", source_id)
        source.cluster("SETSLOT", slot, "MIGRATING", target_id)
        if keys := source.cluster("GETKEYSINSLOT", slot, 1000):
            source.migrate("127.0.0.1", target_port, keys, 0, 5000)
        others = [port for port in nodes if port not in (source_port, target_port)]
        for port in (target_port, source_port, *others):  # the new owner first, as redis-cli does
            nodes[port].cluster("SETSLOT", slot, "NODE", target_id)
    finally:
        for node in nodes.values():
            node.close()
    return f"127.0.0.1:{target_port}"


def test_a_slot_moved_to_another_master_is_followed(redis_settings: Settings) -> None:
    with EmbeddedRedisCluster() as cluster:  # a cluster of its own: the test reshards it
        settings = redis_settings.with_overrides(redis={"url": cluster.url, "cluster": True})
        client = connect(settings.redis, binary=True)
        try:
            accounts = _accounts(40, seed=3)
            store = _store(client, settings)
            loaded = store.load(accounts)
            _apply(loaded, _events(accounts, 2), settings)
            assert store.save(loaded) == []

            moved = store.key(accounts[0])
            before = client.get_node_from_key(moved).name
            after = _move_slot(cluster, moved)
            assert after != before
            assert client.get_node_from_key(moved).name == before  # the client has not noticed

            registry = CollectorRegistry()
            again = _store(client, settings, registry).load(accounts)  # MOVED: runs again
            assert [again.states[a].events for a in accounts] == [2] * 40
            assert client.get_node_from_key(moved).name == after
            count = registry.get_sample_value(
                "detector_redis_roundtrip_seconds_count", {"op": "load"}
            )
            assert count == 1
        finally:
            client.close()
