"""The per-shard backlog an operator watches, on a real Redis: lag, pending, oldest age."""

from __future__ import annotations

import asyncio

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.bus.base import entry_order
from perfintel.bus.codec import encode_batch
from perfintel.bus.redis_streams import RedisBus
from perfintel.bus.watch import shard_status
from tests.bus.conftest import REDIS_URL


def _payload(i: int) -> bytes:
    return encode_batch(
        SampleBatch.from_arrays({"__name__": "m"}, np.array([i]), np.array([i * 1.0]))
    )


def test_lag_pending_and_age_of_the_oldest_unacknowledged_entry(redis_prefix: str) -> None:
    async def run() -> None:
        bus = RedisBus(REDIS_URL, redis_prefix, 2)
        try:
            ids = []
            for i in range(3):
                ids.append(await bus.publish(1, f"b{i}", _payload(i)))
                await asyncio.sleep(0.01)  # distinct milliseconds
            ms = [entry_order(i)[0] for i in ids]
            now = ms[-1] + 5000

            def figures(st: list) -> list[tuple[int, int, float]]:  # type: ignore[type-arg]
                return [(s.lag, s.pending, s.oldest_age_s) for s in st]

            # no group yet: everything is lag; the first entry is the oldest
            got = figures(await shard_status(bus, "g", now))
            assert got == [(0, 0, 0.0), (3, 0, (now - ms[0]) / 1000)]
            first = await bus.consume("g", "c", [0, 1], 1, 10)  # one entry delivered
            got = figures(await shard_status(bus, "g", now))
            assert got[1] == (2, 1, (now - ms[0]) / 1000)
            await bus.ack("g", first)  # acknowledged: the oldest is the next undelivered
            got = figures(await shard_status(bus, "g", now))
            assert got[1] == (2, 0, (now - ms[1]) / 1000)
            rest = await bus.consume("g", "c", [0, 1], 10, 10)
            assert len(rest) == 2
            got = figures(await shard_status(bus, "g", now))
            assert got[1] == (0, 2, (now - ms[1]) / 1000)
            await bus.ack("g", rest)
            assert figures(await shard_status(bus, "g", now))[1] == (0, 0, 0.0)
        finally:
            await bus.close()

    asyncio.run(run())
