"""Redis at 127.0.0.1:6379 with a unique stream prefix per test (keys dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix; fails, never skips, without a server."""
    prefix = f"perfintel-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


# the alerting state databases (SQLite file, fresh PostgreSQL database) for leases and checkpoints
from tests.alerting.conftest import database_url, postgres_url  # noqa: E402

__all__ = ["REDIS_URL", "database_url", "postgres_url", "redis_prefix"]
