"""The bus between ingest and worker processes: one small Protocol, two backends.

A bus carries encoded batches (``perfintel.bus.codec``) on ``shards``
ordered streams. Consumers read through named groups; an entry stays pending
for its group until acknowledged, so a consumer that dies leaves its pending
entries to be claimed by another (``claim_stale``): delivery is at least
once, and consumers make processing idempotent with the batch id.

Backends: ``MemoryBus`` (in-process, for tests of the code above it) and
``RedisBus`` (Redis Streams). Errors of a backend reach callers as
``BusError`` (a ``StorageError``: retryable, HTTP 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from perfintel.errors import StorageError


class BusError(StorageError):
    """The bus backend failed (unreachable, refused a command)."""


def entry_order(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream entry id ``<ms>-<seq>`` (ids do not sort as strings)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Delivery:
    """One entry read from shard ``shard``: ``entry_id`` orders entries within the shard."""

    shard: int
    entry_id: str
    batch_id: str
    payload: bytes


@dataclass(frozen=True)
class ShardBacklog:
    """What is not yet done on a shard: entries never delivered to the slowest group
    (``lag``) plus entries delivered but not acknowledged (``pending``)."""

    shard: int
    length: int
    lag: int
    pending: int

    @property
    def behind(self) -> int:
        return self.lag + self.pending


class Bus(Protocol):
    shards: int

    async def publish(self, shard: int, batch_id: str, payload: bytes) -> str:
        """Append one batch to ``shard``; returns its entry id."""
        ...

    async def publish_many(self, entries: Sequence[tuple[int, str, bytes]]) -> list[str]:
        """``publish`` each ``(shard, batch_id, payload)``, in one round trip where the
        backend can; returns the entry ids."""
        ...

    async def consume(
        self, group: str, consumer: str, shards: Sequence[int], count: int, block_ms: int
    ) -> list[Delivery]:
        """New entries of ``shards`` for ``consumer`` (pending for it until acked)."""
        ...

    async def ack(self, group: str, deliveries: Sequence[Delivery]) -> None: ...

    async def claim_stale(
        self, group: str, consumer: str, shard: int, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        """Entries of ``shard`` pending for another consumer for ``min_idle_ms`` or more,
        now pending for ``consumer``."""
        ...

    async def backlog(self, group: str) -> list[ShardBacklog]: ...

    async def trim(self) -> int:
        """Drop entries every group has acknowledged; returns how many were dropped."""
        ...

    async def ping(self) -> None:
        """Raise ``BusError`` when the backend cannot be reached."""
        ...

    async def close(self) -> None: ...


class ReadAhead:
    """One ``consume`` kept in flight while the caller works on the previous one, so a
    consumer's next entries are on their way while it scores (a round trip and Redis'
    own work overlap the CPU work instead of following it).

    At most one read is in flight (memory bounded by ``count`` entries a shard). A read
    is never cancelled: entries Redis has delivered are pending for the consumer, so they
    must reach it; ``take`` waits for it (at most ``block_ms`` plus a round trip).
    Entries of a read are those of the shards it was started for; a consumer that no
    longer owns a shard ignores them, and they stay pending for the next owner to claim,
    exactly as entries it had read itself and not acknowledged.
    """

    def __init__(self, bus: Bus, group: str, consumer: str) -> None:
        self.bus = bus
        self.group = group
        self.consumer = consumer
        self._task: asyncio.Task[list[Delivery]] | None = None

    @property
    def in_flight(self) -> bool:
        return self._task is not None

    def start(self, shards: Sequence[int], count: int, block_ms: int) -> None:
        """Start reading the next entries of ``shards`` (no-op while a read is in flight)."""
        if self._task is None and shards:
            self._task = asyncio.ensure_future(
                self.bus.consume(self.group, self.consumer, list(shards), count, block_ms)
            )

    async def take(self) -> list[Delivery] | None:
        """The entries of the read in flight (``None``: none was); its ``BusError``, if
        it failed (nothing was delivered then, or Redis redelivers on claim)."""
        task = self._task
        if task is None:
            return None
        try:
            # a cancelled caller leaves the read to finish, for the next ``take``
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._task = None
