"""Fixtures the integration tests share beside the session's services (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from detector.config import Settings


@pytest.fixture
def client(redis_settings: Settings) -> Iterator[redis.Redis]:
    """A client on the session's Redis that reads text (a test may define its own)."""
    client = redis.Redis.from_url(redis_settings.redis.url, decode_responses=True)
    yield client
    client.close()
