"""The group stage on a real 3-master Redis Cluster finds the same campaigns as on one Redis,
and its state spreads over every master (no single hash tag holds it)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis

from detector.app import replay
from detector.config import Settings
from detector_lab.sim.generate import simulate
from detector_lab.sim.scenario import load_scenario

pytestmark = pytest.mark.integration


def _alerts(path: Path) -> set[tuple[str, str, str, str]]:
    alerts = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return {(a["alert_id"], a["subject_id"], a["type"], a["severity"]) for a in alerts}


def test_the_same_campaigns_on_one_redis_and_on_a_cluster(
    tmp_path: Path, redis_url: str, redis_cluster_url: str
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in simulate(load_scenario("ci")).events))
    single, cluster = tmp_path / "single.jsonl", tmp_path / "cluster.jsonl"
    replay(Settings(), events, single, redis_url=redis_url)
    on_cluster = Settings().with_overrides(redis={"cluster": True})
    replay(on_cluster, events, cluster, redis_url=redis_cluster_url)

    found = _alerts(single)
    campaigns = {a for a in found if a[2] == "coordinated_cluster"}
    assert len(campaigns) > 20, "the scenario's campaigns must be found for this to mean anything"
    assert _alerts(cluster) == found

    # Every master holds part of the group stage's state.
    client = redis.cluster.RedisCluster.from_url(redis_cluster_url, decode_responses=True)
    masters = client.get_primaries()
    held = [
        sum(1 for _ in client.scan_iter(match="det:replay:*:c[gv]:*", target_nodes=node))
        for node in masters
    ]
    client.close()
    assert len(masters) == 3 and all(n > 0 for n in held), held
