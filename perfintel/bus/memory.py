"""An in-process ``Bus`` with the semantics of Redis Streams consumer groups.

For tests of the code above the bus (workers, backpressure), never instead of
testing ``RedisBus`` itself. Entry ids are ``"<n>-0"`` with ``n`` counting up
per shard. Single event loop only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from perfintel.bus.base import Delivery, ShardBacklog


@dataclass
class _Group:
    last: int = 0  # highest entry number delivered
    pending: dict[int, tuple[str, float]] = field(default_factory=dict)  # n -> consumer, at


class MemoryBus:
    def __init__(self, shards: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.shards = shards
        self.clock = clock
        self._entries: list[dict[int, tuple[str, bytes]]] = [{} for _ in range(shards)]
        self._next = [1] * shards
        self._groups: list[dict[str, _Group]] = [{} for _ in range(shards)]
        self._wake = asyncio.Event()

    async def publish(self, shard: int, batch_id: str, payload: bytes) -> str:
        n = self._next[shard]
        self._next[shard] += 1
        self._entries[shard][n] = (batch_id, payload)
        self._wake.set()
        return f"{n}-0"

    async def publish_many(self, entries: Sequence[tuple[int, str, bytes]]) -> list[str]:
        return [await self.publish(*e) for e in entries]

    def _group(self, shard: int, group: str) -> _Group:
        return self._groups[shard].setdefault(group, _Group())

    async def consume(
        self, group: str, consumer: str, shards: Sequence[int], count: int, block_ms: int
    ) -> list[Delivery]:
        deadline = self.clock() + block_ms / 1000
        while True:
            out: list[Delivery] = []
            for s in shards:
                g = self._group(s, group)
                for n in sorted(k for k in self._entries[s] if k > g.last)[: count - len(out)]:
                    g.last = n
                    g.pending[n] = (consumer, self.clock())
                    bid, payload = self._entries[s][n]
                    out.append(Delivery(s, f"{n}-0", bid, payload))
            if out or self.clock() >= deadline:
                return out
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - self.clock()))
            except TimeoutError:
                return []

    async def ack(self, group: str, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            self._group(d.shard, group).pending.pop(int(d.entry_id.split("-")[0]), None)

    async def claim_stale(
        self, group: str, consumer: str, shard: int, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        g = self._group(shard, group)
        now = self.clock()
        out: list[Delivery] = []
        for n in sorted(g.pending):
            _owner, at = g.pending[n]
            if (now - at) * 1000 >= min_idle_ms and len(out) < count:
                g.pending[n] = (consumer, now)
                entry = self._entries[shard].get(n)
                if entry is None:  # trimmed meanwhile: nothing to deliver
                    del g.pending[n]
                    continue
                out.append(Delivery(shard, f"{n}-0", entry[0], entry[1]))
        return out

    async def backlog(self, group: str) -> list[ShardBacklog]:
        out = []
        for s in range(self.shards):
            g = self._group(s, group)
            lag = sum(1 for k in self._entries[s] if k > g.last)
            out.append(ShardBacklog(s, len(self._entries[s]), lag, len(g.pending)))
        return out

    async def trim(self) -> int:
        dropped = 0
        for s in range(self.shards):
            groups = self._groups[s].values()
            if not groups:
                continue
            keep_from = min(min(g.pending, default=g.last + 1) for g in groups)
            for n in [k for k in self._entries[s] if k < keep_from]:
                del self._entries[s][n]
                dropped += 1
        return dropped

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
