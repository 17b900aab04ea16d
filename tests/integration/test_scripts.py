"""The stores' Lua scripts run directly against a real Redis, argument by argument."""

from __future__ import annotations

import orjson
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


def _link_batch(accounts: list[dict[str, object]], **watermarks: int) -> bytes:
    return orjson.dumps(
        {
            "settings": {
                "min_suspects": 3,
                "index_cap": 100,
                "ttl_s": 600,
                "listed": 10,
                "realert_growth": 2.0,
                "singleton_ttl_s": 60,
                "churn_window_s": 3600,
            },
            "watermarks": watermarks,
            "accounts": accounts,
        }
    )


def _account(
    name: str, ts: float, *, index: list[str], recent: tuple[str, ...] = ()
) -> dict[str, object]:
    return {
        "id": name,
        "ts": ts,
        "suspect": True,
        "events": 2,
        "capability": "coding",
        "index": index,
        "recent": list(recent),
        "models": {"m-1": 2},
    }


def test_campaign_link_takes_a_named_record_and_reports_one(
    client: redis.Redis, unique: str
) -> None:
    link = client.register_script(script("campaign_link"))
    base = f"t{unique}:cmp:{{c}}"
    ts = 1_700_000_000.123456  # event times come back exactly as sent
    shared = ["tpl:abc", "range:10.0.0.0/16"]
    batch = [_account(name, ts + i, index=shared) for i, name in enumerate(("a1", "a2", "a3"))]
    reply = orjson.loads(link(keys=[base], args=[_link_batch(batch, **{"q|0": 41})]))

    (campaign,) = reply["campaigns"]
    assert campaign["root"] == "a:a1"  # the first member in name order names it
    assert sorted(campaign["new"]) == ["a1", "a2", "a3"]
    assert sorted(campaign["listed"]) == ["a1", "a2", "a3"]
    assert campaign["record"]["n"] == "3" and campaign["record"]["kinds"] == "tpl"
    assert float(campaign["record"]["created"]) == ts + 2  # formed when the third one came
    assert float(campaign["record"]["last"]) == ts + 2
    assert campaign["record"]["events"] == "6" and campaign["record"]["cap:coding"] == "6"
    assert campaign["active"] == 3
    (origin,) = reply["sources"]  # the origin carries campaign traffic: it is reported
    assert origin["evidence"] == "range:10.0.0.0/16"
    assert origin["record"]["requests"] == "6" and origin["record"]["campaign_requests"] == "6"
    assert origin["accounts"] == 3 and origin["campaign_accounts"] == 3
    assert float(reply["models"]["m-1"]) == ts
    assert client.hget(f"{base}:lwm", "q|0") == b"41"

    # An origin sent as ``recent`` counts traffic only; a watermark never moves back.
    again = [_account("a1", ts + 10, index=[], recent=["range:10.0.0.0/16"])]
    reply = orjson.loads(link(keys=[base], args=[_link_batch(again, **{"q|0": 7})]))
    (origin,) = reply["sources"]
    assert origin["record"]["requests"] == "8" and origin["accounts"] == 3
    assert client.hget(f"{base}:lwm", "q|0") == b"41"


def test_campaign_link_of_unlinked_accounts_reports_empty_collections(
    client: redis.Redis, unique: str
) -> None:
    link = client.register_script(script("campaign_link"))
    reply = link(keys=[f"t{unique}:cmp:{{c}}"], args=[_link_batch([_account("a", 1.0, index=[])])])
    # Lua has one table type: empty lists come back as JSON objects, which the store reads as empty.
    assert orjson.loads(reply) == {"campaigns": {}, "sources": {}, "models": {"m-1": "1"}}
