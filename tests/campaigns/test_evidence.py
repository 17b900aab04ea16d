"""Evidence values, the stored tally and an account's summary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from detector.campaigns.evidence import (
    FAMILY,
    HELD,
    behaviour_value,
    event_values,
    fold,
    parse,
    summary,
)
from detector.features import EventFeatures


def feat(ts: float = 1000.0, **fields: object) -> EventFeatures:
    base: dict[str, object] = {"created_ts": None, "source_ip": "", "user_agent": ""}
    return EventFeatures("a", "e", 0, ts, 0, 0, "m", 0, 0, 0, **(base | fields))  # type: ignore[arg-type]


def test_every_kind_has_a_family_and_event_values_use_only_those() -> None:
    f = feat(
        billing="b", client="c", network="n", asn_agent="1|u", habit=1, system_hash=2,
        opening=3, prefix=4, created_ts=900.0,
    )  # fmt: skip
    kinds = [k for k, _ in event_values(f)]
    assert set(kinds) <= set(FAMILY)
    assert "young" in kinds  # 100 s old at this request
    old = feat(asn_agent="1|u", created_ts=0.5, ts=200_000.0)
    assert "young" not in [k for k, _ in event_values(old)]


@given(st.lists(st.sampled_from(["n1", "n2", "n3", "n4"]), max_size=60), st.integers(1, 5))
def test_the_tally_never_holds_more_than_its_limit(networks: list[str], limit: int) -> None:
    held: dict[str, int] = {}
    fold(held, [feat(network=n) for n in networks], limit)
    assert len(held) <= limit
    assert sum(held.values()) <= len(networks)


def test_summary_keeps_frequent_values_per_kind() -> None:
    counts = parse({"net:a": 10, "net:b": 1, "net:c": 9, "net:d": 8, "net:e": 7, "cfp:x": 10})
    assert summary(counts, 10) == {("net", "a"), ("net", "c"), ("net", "d"), ("cfp", "x")}
    assert HELD >= 16


def test_the_usual_behaviour_is_no_evidence() -> None:
    assert behaviour_value(400 * 86400.0, 0.0, 0.1) is None
    assert behaviour_value(None, 0.0, 0.0) is None
    assert behaviour_value(3 * 86400.0, 0.0, 0.0) == ("bhv", "7d|-|-")
    assert behaviour_value(400 * 86400.0, 0.5, 0.5) == ("bhv", "old|limit|intent")
