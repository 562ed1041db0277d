"""The ingest side of the bus: split a stored batch by shard, encode, publish; and
refuse new samples (``BackpressureError``) while the workers are too far behind.

``prepare`` (splitting and encoding: CPU work that grows with the batch) runs
on the caller's thread; ``send`` awaits the bus. ``observe`` runs as a
background task: it refreshes how far behind the slowest shard is (so a
request never waits for that) and trims what every group acknowledged.
Batch ids are ``<source>-<sequence>-<shard>``: unique per ingest process.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from itertools import count

from perfintel.background import pause
from perfintel.batch import SampleBatch
from perfintel.bus.base import Bus
from perfintel.bus.encode import ShardEncoder
from perfintel.errors import BackpressureError, PerfintelError

log = logging.getLogger(__name__)

Prepared = list[tuple[int, str, bytes]]


class BusPublisher:
    def __init__(
        self,
        bus: Bus,
        *,
        group: str,
        max_behind: int,
        retry_after_s: float = 1.0,
        trim_interval_s: float = 5.0,
        observe_interval_s: float = 0.5,
        source: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.group = group
        self.max_behind = max_behind
        self.retry_after_s = retry_after_s
        self.trim_interval_s = trim_interval_s
        self.observe_interval_s = observe_interval_s
        self.source = source or f"{socket.gethostname()}.{os.getpid()}.{time.time_ns():x}"
        self.clock = clock
        self._seq = count(1)
        self._encoder = ShardEncoder(bus.shards)
        self.behind = 0  # batches the slowest shard is behind (refreshed by ``observe``)
        self.published_batches = 0
        self.trimmed = 0

    def check(self) -> None:
        """Raise ``BackpressureError`` while the slowest shard is ``max_behind`` behind."""
        if self.behind >= self.max_behind:
            raise BackpressureError(
                f"the bus is {self.behind} batches behind on a shard "
                f"(bus.max_behind = {self.max_behind}); retry later",
                self.retry_after_s,
            )

    def prepare(self, batch: SampleBatch) -> Prepared:
        seq = next(self._seq)
        return [
            (shard, f"{self.source}-{seq}-{shard}", data)
            for shard, data in self._encoder.encode(batch).items()
        ]

    async def send(self, parts: Prepared) -> None:
        await self.bus.publish_many(parts)
        self.published_batches += len(parts)

    async def refresh(self) -> int:
        backlog = await self.bus.backlog(self.group)
        self.behind = max((b.behind for b in backlog), default=0)
        return self.behind

    async def observe(self) -> None:
        """Refresh ``behind`` and trim, until cancelled; bus errors are logged and retried."""
        trimmed_at = self.clock()
        while True:
            try:
                await self.refresh()
                if self.clock() - trimmed_at >= self.trim_interval_s:
                    trimmed_at = self.clock()
                    self.trimmed += await self.bus.trim()
            except PerfintelError as exc:
                log.warning("bus: %s", exc)
            await pause(self.observe_interval_s)
