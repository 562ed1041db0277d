"""``Bus`` on Redis Streams (redis-py asyncio).

One stream per shard, key ``<prefix>:shard:<n>``; each entry has two fields,
``i`` (the batch id) and ``d`` (the encoded batch). Consumer groups are
created on first use (``XGROUP CREATE ... MKSTREAM``, from id 0). Pending
entries of a dead consumer move with ``XAUTOCLAIM``. ``trim`` keeps every
entry some group still needs: per stream, ``XTRIM MINID`` at the smallest of
(each group's oldest pending id, or the id after its last delivered one).
Redis errors reach callers as ``BusError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from perfintel.bus.base import BusError, Delivery, ShardBacklog, entry_order


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _next_id(entry_id: str) -> str:
    ms, seq = entry_id.split("-")
    return f"{ms}-{int(seq) + 1}"


class RedisBus:
    def __init__(self, url: str, prefix: str, shards: int) -> None:
        self.shards = shards
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(url, decode_responses=False)
        self._groups: set[tuple[str, int]] = set()

    def key(self, shard: int) -> str:
        return f"{self.prefix}:shard:{shard}"

    async def publish(self, shard: int, batch_id: str, payload: bytes) -> str:
        try:
            return _text(await self.redis.xadd(self.key(shard), {"i": batch_id, "d": payload}))
        except RedisError as exc:
            raise BusError(f"bus publish to shard {shard}: {exc}") from exc

    async def publish_many(self, entries: Sequence[tuple[int, str, bytes]]) -> list[str]:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard, batch_id, payload in entries:
                    pipe.xadd(self.key(shard), {"i": batch_id, "d": payload})
                return [_text(r) for r in await pipe.execute()]
        except RedisError as exc:
            raise BusError(f"bus publish: {exc}") from exc

    async def _ensure_group(self, group: str, shard: int) -> None:
        if (group, shard) in self._groups:
            return
        try:
            await self.redis.xgroup_create(self.key(shard), group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((group, shard))

    async def consume(
        self, group: str, consumer: str, shards: Sequence[int], count: int, block_ms: int
    ) -> list[Delivery]:
        if not shards:
            return []
        try:
            for s in shards:
                await self._ensure_group(group, s)
            reply = await self.redis.xreadgroup(
                group,
                consumer,
                {self.key(s): ">" for s in shards},
                count=count,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted: create the group anew next time
                self._groups.difference_update((group, s) for s in shards)
            raise BusError(f"bus consume: {exc}") from exc
        except RedisError as exc:
            raise BusError(f"bus consume: {exc}") from exc
        shard_of = {self.key(s): s for s in shards}
        out: list[Delivery] = []
        streams: list[Any] = list(reply or [])  # RESP2: [[key, [(id, fields), ...]], ...]
        for key, entries in streams:
            out.extend(self._deliveries(shard_of[_text(key)], entries))
        return out

    @staticmethod
    def _deliveries(shard: int, entries: Any) -> list[Delivery]:
        out = []
        for entry_id, fields in entries:
            if not fields:  # deleted (trimmed) entry still in a pending list
                continue
            out.append(Delivery(shard, _text(entry_id), _text(fields[b"i"]), bytes(fields[b"d"])))
        return out

    async def ack(self, group: str, deliveries: Sequence[Delivery]) -> None:
        by_shard: dict[int, list[str]] = {}
        for d in deliveries:
            by_shard.setdefault(d.shard, []).append(d.entry_id)
        if not by_shard:
            return
        try:  # every shard in one round trip
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard, ids in by_shard.items():
                    pipe.xack(self.key(shard), group, *ids)
                await pipe.execute()
        except RedisError as exc:
            raise BusError(f"bus ack: {exc}") from exc

    async def claim_stale(
        self, group: str, consumer: str, shard: int, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        out: list[Delivery] = []
        start = "0-0"
        try:
            await self._ensure_group(group, shard)
            while len(out) < count:
                reply = await self.redis.xautoclaim(
                    self.key(shard), group, consumer, min_idle_ms, start, count=count - len(out)
                )
                start = _text(reply[0])
                out.extend(self._deliveries(shard, reply[1]))
                if start == "0-0":
                    break
        except RedisError as exc:
            raise BusError(f"bus claim on shard {shard}: {exc}") from exc
        return out

    async def backlog(self, group: str) -> list[ShardBacklog]:
        out = []
        keys = [self.key(s) for s in range(self.shards)]
        try:  # two round trips for every shard (an ingest process asks twice a second)
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xlen(key)
                lengths = [int(n) for n in await pipe.execute()]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, length in zip(keys, lengths, strict=True):
                    if length:
                        pipe.xinfo_groups(key)
                infos = iter(await pipe.execute()) if any(lengths) else iter(())
            for s, length in enumerate(lengths):
                groups = next(infos) if length else []
                info = next((g for g in groups if _text(g["name"]) == group), None)
                if info is None:
                    out.append(ShardBacklog(s, length, length, 0))
                    continue
                lag = info.get("lag")
                out.append(
                    ShardBacklog(
                        s, length, int(lag) if lag is not None else length, int(info["pending"])
                    )
                )
        except RedisError as exc:
            raise BusError(f"bus backlog: {exc}") from exc
        return out

    async def trim(self) -> int:
        dropped = 0
        try:
            for s in range(self.shards):
                key = self.key(s)
                groups = await self.redis.xinfo_groups(key) if await self.redis.exists(key) else []
                if not groups:
                    continue  # nobody reads this stream yet: keep everything
                needed: list[str] = []
                for g in groups:
                    if int(g["pending"]):
                        summary = await self.redis.xpending(key, _text(g["name"]))
                        needed.append(_text(summary["min"]))
                    else:
                        needed.append(_next_id(_text(g["last-delivered-id"])))
                dropped += int(
                    await self.redis.xtrim(
                        key, minid=min(needed, key=entry_order), approximate=False
                    )
                )
        except RedisError as exc:
            raise BusError(f"bus trim: {exc}") from exc
        return dropped

    async def tail(self, positions: Mapping[int, str], count: int, block_ms: int) -> list[Delivery]:
        """Entries after ``positions`` (shard -> entry id) read without a consumer group
        (``XREAD``): nothing pending, nothing acknowledged, trimming not held back. For
        readers that only watch (an api process's live stream)."""
        if not positions:
            return []
        try:
            reply = await self.redis.xread(
                {self.key(s): i for s, i in positions.items()}, count=count, block=block_ms
            )
        except RedisError as exc:
            raise BusError(f"bus tail: {exc}") from exc
        shard_of = {self.key(s): s for s in positions}
        out: list[Delivery] = []
        streams: list[Any] = list(reply or [])
        for key, entries in streams:
            out.extend(self._deliveries(shard_of[_text(key)], entries))
        return out

    async def stream_position(self, shard: int) -> tuple[str, int]:
        """``(last entry id, entries ever added)`` of a shard's stream (``0-0``, 0 when it
        does not exist yet); the count needs Redis 7."""
        try:
            info = await self.redis.xinfo_stream(self.key(shard))
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return "0-0", 0
            raise BusError(f"bus stream info: {exc}") from exc
        except RedisError as exc:
            raise BusError(f"bus stream info: {exc}") from exc
        return _text(info["last-generated-id"]), int(info.get("entries-added") or 0)

    async def has_after(self, shard: int, entry_id: str) -> bool:
        """Whether the shard's stream still holds an entry after ``entry_id``."""
        try:
            return bool(await self.redis.xrange(self.key(shard), f"({entry_id}", "+", count=1))
        except RedisError as exc:
            raise BusError(f"bus range: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except RedisError as exc:
            raise BusError(f"redis unreachable: {exc}") from exc

    async def delete_all(self) -> None:
        """Drop every shard stream (tests and ``perfintel`` tooling)."""
        try:
            await self.redis.delete(*(self.key(s) for s in range(self.shards)))
        except RedisError as exc:
            raise BusError(f"bus delete: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()
