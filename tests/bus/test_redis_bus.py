"""RedisBus against the real Redis: delivery, claiming, trimming and the backlog."""

from __future__ import annotations

import asyncio

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.bus.codec import decode_batch, encode_batch
from perfintel.bus.redis_streams import RedisBus
from tests.bus.conftest import REDIS_URL


def _payload(i: int) -> bytes:
    return encode_batch(
        SampleBatch.from_arrays({"__name__": "m"}, np.array([i]), np.array([i * 1.0]))
    )


def test_entries_stay_pending_until_acked_and_a_survivor_claims_them(redis_prefix: str) -> None:
    async def run() -> None:
        bus = RedisBus(REDIS_URL, redis_prefix, 2)
        try:
            # the group exists before publishing, as when workers run first
            assert await bus.consume("g", "a", [0], 10, 1) == []
            for i in range(5):
                await bus.publish(0, f"b{i}", _payload(i))
            got = await bus.consume("g", "a", [0], 3, 100)
            assert [d.batch_id for d in got] == ["b0", "b1", "b2"]
            await bus.ack("g", got[:1])
            # consumer "a" dies with b1, b2 pending; not yet idle long enough
            assert await bus.claim_stale("g", "b", 0, 60_000, 10) == []
            await asyncio.sleep(0.15)
            claimed = await bus.claim_stale("g", "b", 0, 100, 10)
            assert [d.batch_id for d in claimed] == ["b1", "b2"]
            assert decode_batch(claimed[0].payload).values.tolist() == [1.0]
            # the rest are new entries for "b"; nothing is delivered twice as new
            rest = await bus.consume("g", "b", [0], 10, 100)
            assert [d.batch_id for d in rest] == ["b3", "b4"]
            backlog = await bus.backlog("g")
            assert (backlog[0].length, backlog[0].lag, backlog[0].pending) == (5, 0, 4)
        finally:
            await bus.close()

    asyncio.run(run())


def test_trim_keeps_what_the_slowest_group_has_not_acknowledged(redis_prefix: str) -> None:
    async def run() -> None:
        bus = RedisBus(REDIS_URL, redis_prefix, 1)
        try:
            assert await bus.trim() == 0  # no stream, no group
            ids = [await bus.publish(0, f"b{i}", _payload(i)) for i in range(6)]
            assert await bus.trim() == 0  # nobody reads yet: keep everything
            fast = await bus.consume("fast", "x", [0], 10, 10)
            await bus.ack("fast", fast)
            slow = await bus.consume("slow", "y", [0], 4, 10)
            await bus.ack("slow", slow[:2])  # b2, b3 pending; b4, b5 undelivered
            assert await bus.trim() == 2
            assert await bus.redis.xlen(bus.key(0)) == 4
            first = await bus.redis.xrange(bus.key(0), count=1)
            assert first[0][0].decode() == ids[2]
            await bus.ack("slow", slow[2:])
            rest = await bus.consume("slow", "y", [0], 10, 10)
            await bus.ack("slow", rest)
            assert await bus.trim() == 4
            assert await bus.redis.xlen(bus.key(0)) == 0
        finally:
            await bus.close()

    asyncio.run(run())


def test_backlog_counts_lag_and_pending_per_shard(redis_prefix: str) -> None:
    async def run() -> None:
        bus = RedisBus(REDIS_URL, redis_prefix, 3)
        try:
            for i in range(4):
                await bus.publish(1, f"b{i}", _payload(i))
            b = await bus.backlog("g")
            assert [x.behind for x in b] == [0, 4, 0]  # no group yet: everything is behind
            await bus.consume("g", "c", [0, 1, 2], 1, 10)
            b = await bus.backlog("g")
            assert (b[1].lag, b[1].pending) == (3, 1)
        finally:
            await bus.close()

    asyncio.run(run())
