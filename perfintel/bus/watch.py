"""Per-shard figures of the bus for an operator (``/metrics`` of ingest processes): how
many entries the workers' group has not received yet (lag) or received and not
acknowledged (pending), and how old the oldest of them is (how far behind, in time).

Read from Redis (``XINFO GROUPS``, ``XPENDING``, one ``XRANGE`` entry) every few seconds,
not per scrape: ``/metrics`` renders synchronously and must not wait on Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from perfintel.background import pause
from perfintel.bus.base import BusError, entry_order
from perfintel.bus.redis_streams import RedisBus
from perfintel.errors import PerfintelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardStatus:
    shard: int
    #: entries not yet delivered to the group
    lag: int
    #: entries delivered and not yet acknowledged (a worker is on them, or died with them)
    pending: int
    #: age of the oldest entry not yet acknowledged; 0 when there is none
    oldest_age_s: float


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def shard_status(bus: RedisBus, group: str, now_ms: int) -> list[ShardStatus]:
    """Each shard's backlog for ``group`` (every entry counts as lag before the group exists)."""
    r = bus.redis
    out = []
    try:
        for s in range(bus.shards):
            key = bus.key(s)
            length = int(await r.xlen(key))
            groups = await r.xinfo_groups(key) if length else []
            info = next((g for g in groups if _text(g["name"]) == group), None)
            oldest: str | None = None
            if info is None:
                lag, pending = length, 0
                if length:
                    oldest = await _first_id(bus, key, "-")
            else:
                pending = int(info["pending"])
                lag = int(info["lag"]) if info.get("lag") is not None else length
                if pending:
                    oldest = _text((await r.xpending(key, group))["min"])
                elif lag:
                    oldest = await _first_id(bus, key, "(" + _text(info["last-delivered-id"]))
            age = 0.0 if oldest is None else max(0, now_ms - entry_order(oldest)[0]) / 1000
            out.append(ShardStatus(s, lag, pending, age))
    except RedisError as exc:
        raise BusError(f"bus shard status: {exc}") from exc
    return out


async def _first_id(bus: RedisBus, key: str, start: str) -> str | None:
    """The id of the first entry of ``key`` from ``start`` (``(`` + id: after it)."""
    first: Any = await bus.redis.xrange(key, min=start, count=1)
    return _text(first[0][0]) if first else None


class BusWatch:
    """Keeps ``status`` (shard -> ``ShardStatus``) fresh every ``interval_s``."""

    def __init__(
        self,
        bus: RedisBus,
        group: str,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.group = group
        self.interval_s = interval_s
        self.clock = clock
        self.status: dict[int, ShardStatus] = {}

    async def refresh(self) -> None:
        got = await shard_status(self.bus, self.group, int(self.clock() * 1000))
        self.status = {st.shard: st for st in got}

    def lag(self, shard: int) -> float:
        st = self.status.get(shard)
        return float(st.lag) if st else 0.0

    def pending(self, shard: int) -> float:
        st = self.status.get(shard)
        return float(st.pending) if st else 0.0

    def oldest_age(self, shard: int) -> float:
        st = self.status.get(shard)
        return st.oldest_age_s if st else 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except PerfintelError as exc:
                log.warning("%s", exc)
            await pause(self.interval_s)
