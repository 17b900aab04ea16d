"""The stores' Lua scripts run directly against a real Redis, argument by argument."""

from __future__ import annotations

import pytest
import redis

from detector.io.scripts import script

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_account_save_writes_only_over_the_watermark_it_loaded(
    client: redis.Redis, unique: str
) -> None:
    save = client.register_script(script("account_save"))
    key = f"t{unique}:acct:{{a}}"
    # ARGV: ttl, then per key: the watermark loaded, the new one, the new value.
    assert save(keys=[key], args=[60, "-1,-1;", "0,5;", b"0,5;first"]) == [1]
    assert save(keys=[key], args=[60, "-1,-1;", "0,9;", b"0,9;stale"]) == [0]  # moved on
    assert client.get(key) == b"0,5;first"
    # The same write again (its reply was lost): the stored watermark is already the new one.
    assert save(keys=[key], args=[60, "-1,-1;", "0,5;", b"0,5;first"]) == [1]
    assert save(keys=[key], args=[60, "0,5;", "0,7;", b"0,7;second"]) == [1]
    assert client.get(key) == b"0,7;second"
    assert 0 < client.ttl(key) <= 60


def test_account_load_sends_a_one_where_redis_holds_the_cached_watermark(
    client: redis.Redis, unique: str
) -> None:
    load = client.register_script(script("account_load"))
    held, other, missing = (f"t{unique}:acct:{{{a}}}" for a in "abc")
    client.set(held, b"0,7;value-a")
    client.set(other, b"1,3;value-b")
    # ARGV: per key, the watermark of the state the worker holds ("" for none).
    assert load(keys=[held, other, missing], args=["0,7;", "1,2;", ""]) == [1, b"1,3;value-b", None]


def test_every_script_the_stores_name_is_shipped() -> None:
    for name in ("account_save", "account_load", "campaign_link"):
        assert "redis.call" in script(name)
