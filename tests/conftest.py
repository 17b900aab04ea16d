"""Session-wide real services: embedded redis-server, Redis Cluster and Tansu broker, unless
REDIS_URL / REDIS_CLUSTER_URL / KAFKA_BOOTSTRAP_SERVERS name external ones. Every test gets
its own key prefix and topic names, so tests never see each other's data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from detector.config import Settings
from detector.embedded import EmbeddedKafka, EmbeddedRedis, EmbeddedRedisCluster


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """One node of a Redis Cluster (three masters when embedded); the others are discovered."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    with EmbeddedRedisCluster() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with EmbeddedKafka() as server:
        yield server.bootstrap_servers


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def redis_settings(redis_url: str, unique: str) -> Settings:
    """Settings for tests that need Redis only."""
    return Settings().with_overrides(redis={"url": redis_url, "key_prefix": f"t{unique}:"})


@pytest.fixture
def service_settings(redis_url: str, kafka_bootstrap: str, unique: str) -> Settings:
    """Settings for a worker on its own topics, group and key prefix; fast group joins."""
    return Settings().with_overrides(
        redis={"url": redis_url, "key_prefix": f"t{unique}:"},
        kafka={
            "bootstrap_servers": kafka_bootstrap,
            "input_topic": f"q-{unique}",
            "alerts_topic": f"a-{unique}",
            "dlq_topic": f"d-{unique}",
            "group_id": f"g-{unique}",
            "topic_partitions": 2,
            "poll_max_records": 200,
            "poll_timeout_ms": 200,
            "max_poll_interval_ms": 10000,
        },
        metrics={"port": 0},
        service={"backoff_initial_s": 0.2, "backoff_max_s": 2.0},
    )
