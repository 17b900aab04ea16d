"""AccountStore against a real Redis: round trips, atomic compare-and-set, HyperLogLogs, expiry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from detector.config import FeatureSettings, Settings
from detector.events import QueryEvent
from detector.features import extract
from detector.features.intent import IntentTagger
from detector.metrics import Metrics
from detector.state.account import apply_event
from detector.state.store import AccountStore, connect

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


@pytest.fixture
def store(redis_settings: Settings):
    client = connect(redis_settings.redis)
    registry = CollectorRegistry()
    yield (
        AccountStore(client, redis_settings.redis, redis_settings.state, Metrics(registry)),
        client,
        registry,
    )
    client.close()


def test_load_apply_save_round_trip(store, redis_settings: Settings) -> None:
    s, _, registry = store
    feats = _feats(10)
    loaded = s.load(feats)
    assert [d.ips for d in loaded.distinct][:4] == [1, 2, 3, 3]
    for f, d in zip(feats, loaded.distinct, strict=True):
        assert apply_event(loaded.states[f.account_id], f, d, redis_settings.state) is not None
    assert s.save(loaded) == []

    again = s.load(feats)  # the same events redelivered
    state = again.states["acct-1"]
    assert state.events == 10
    assert all(
        apply_event(state, f, d, redis_settings.state) is None
        for f, d in zip(feats, again.distinct, strict=True)
    )
    assert registry.get_sample_value("detector_redis_roundtrip_seconds_count", {"op": "load"}) == 2


def test_a_batch_loaded_again_after_a_lost_write_sees_the_same_distinct_counts(
    store, redis_settings: Settings
) -> None:
    s, client, _ = store
    feats = _feats(6, ips=3)
    first = [d.ips for d in s.load(feats).distinct]  # then the worker died before saving
    loaded = s.load(feats)
    assert [d.ips for d in loaded.distinct] == first == [1, 2, 3, 3, 3, 3]
    for f, d in zip(feats, loaded.distinct, strict=True):
        apply_event(loaded.states[f.account_id], f, d, redis_settings.state)
    assert s.save(loaded) == []
    ip, *_ = s.keys("acct-1")[1:]
    assert client.pfcount(ip) == 3
    scratch = [k for k in s.keys("acct-1") if k.endswith("+")]
    assert scratch and not client.exists(*scratch)
    redelivered = s.load(feats)  # all duplicates now: nothing to write, nothing left behind
    assert s.save(redelivered) == [] and not client.exists(*scratch)
    later = s.load(_feats(2, start_offset=6, ips=5))  # 10.0.0.0 and .1 are known
    assert [d.ips for d in later.distinct] == [3, 3]


def test_save_refuses_when_account_changed_meanwhile(store, redis_settings: Settings) -> None:
    s, _, _ = store
    feats = _feats(3)
    first = s.load(feats)
    second = s.load(feats)  # another worker read the same state
    for loaded in (first, second):
        for f, d in zip(feats, loaded.distinct, strict=True):
            apply_event(loaded.states[f.account_id], f, d, redis_settings.state)
    assert s.save(first) == []
    assert s.save(second) == ["acct-1"]  # compare-and-set on the watermark refused it
    assert s.load(feats).states["acct-1"].events == 3


def test_keys_expire_and_stay_small(store, redis_settings: Settings) -> None:
    s, client, _ = store
    feats = _feats(200, ips=50)
    loaded = s.load(feats)
    for f, d in zip(feats, loaded.distinct, strict=True):
        apply_event(loaded.states[f.account_id], f, d, redis_settings.state)
    s.save(loaded)
    keys = s.keys("acct-1")
    ttls = [client.ttl(k) for k in keys if client.exists(k)]
    assert ttls and all(0 < t <= redis_settings.state.ttl_s for t in ttls)
    total = sum(client.memory_usage(k) or 0 for k in keys)
    assert total < 2048, f"account state uses {total} bytes"


def test_script_cache_loss_is_recovered(store, redis_settings: Settings) -> None:
    s, client, _ = store
    client.script_flush()
    assert s.load(_feats(2)).states["acct-1"].events == 0
