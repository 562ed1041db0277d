"""An api process's view of the bus: every shard's new batches, for the live stream.

With process roles, samples arrive at ingest processes; an ``api`` process has
no ingest of its own, so it follows the shard streams and hands each batch to
the same ``LivePublisher`` local ingest feeds in a single process (the
WebSocket stream, the overview's ingest figures, online peer outliers).

It reads with plain ``XREAD`` from the streams' ends, not through a consumer
group: a watcher has nothing to acknowledge, must not hold trimming back, and
leaves nothing behind when it dies. It is a view, not a system of record, so
it never queues: each round reads at most ``count`` entries per shard; when
the newest entry it got from a shard is more than ``max_lag_s`` old (the
entry id's time), it skips to the shard's end instead of decoding them. What
it never delivered (skipped, or trimmed before it read them) is counted in
``dropped``: Redis 7 counts every entry ever added to a stream, so entries
added since a known point minus entries read are the ones missed. While no
client watches samples (``wants_samples``), entries are only counted from
their headers (the overview's ingest figures), not decoded.

Workers append their detector outputs (anomaly scores, bands) to one more
stream, ``<prefix>:outputs:shard:0`` (``OutputsFanout``), trimmed by length,
while some api process has live clients (it sets ``<prefix>:outputs:watched``
with an expiry): encoding the outputs costs a worker about as much as scoring
them, so nobody watching costs nothing. api processes follow that stream with
a second tail and hand the outputs to the live hub as a single process's
detector does (scores on the charts, ``anomalies`` events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence

import redis
from redis.exceptions import RedisError

from perfintel.background import cancel_requested
from perfintel.batch import SampleBatch
from perfintel.bus.base import BusError, Delivery
from perfintel.bus.codec import BatchDecodeError, batch_summary, decode_batch, encode_batch
from perfintel.bus.redis_streams import RedisBus
from perfintel.errors import PerfintelError
from perfintel.storage.base import AppendResult, SampleWriter

log = logging.getLogger(__name__)


#: the stream workers append their detector outputs to (``<prefix>:outputs:shard:0``: a
#: one-shard ``RedisBus`` of prefix ``<prefix>:outputs``), for the api processes' live streams
OUTPUTS = "outputs"
#: entries the outputs stream keeps (nobody acknowledges them: trimmed by length)
OUTPUTS_MAX_LEN = 10_000


#: set (with an expiry) by api processes while a live client is connected: workers encode
#: and append their outputs only then (encoding costs about as much as scoring)
WATCHED_TTL_S = 10.0


def outputs_bus(url: str, prefix: str) -> RedisBus:
    return RedisBus(url, f"{prefix}:{OUTPUTS}", 1)


def watched_key(prefix: str) -> str:
    return f"{prefix}:{OUTPUTS}:watched"


async def mark_watched(bus: RedisBus, prefix: str) -> None:
    """An api process with live clients says so (for ``WATCHED_TTL_S``)."""
    try:
        await bus.redis.set(watched_key(prefix), b"1", ex=int(WATCHED_TTL_S))
    except RedisError as exc:
        raise BusError(f"bus: {exc}") from exc


class OutputsFanout:
    """A worker's ``SampleWriter`` for its detector outputs: writes them to ``inner`` (the
    store, or remote write), then appends them to the outputs stream so api processes show
    the scores and anomaly events on their live streams. Called from the detector's thread
    (a blocking client); the stream is trimmed to about ``max_len`` entries as it grows.
    A failed append is counted, never raised: the store has the scores, the view does not."""

    #: how often the worker asks whether any api process has live clients
    CHECK_S = 2.0

    def __init__(
        self,
        inner: SampleWriter,
        url: str,
        prefix: str,
        max_len: int = OUTPUTS_MAX_LEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.key = outputs_bus(url, prefix).key(0)
        self.watched = watched_key(prefix)
        self.redis = redis.Redis.from_url(url)
        self.max_len = max_len
        self.clock = clock
        self.published = 0
        self.failed = 0
        self._checked_at = -1e18
        self._watched = False

    def _anyone_watching(self) -> bool:
        if self.clock() - self._checked_at >= self.CHECK_S:
            self._checked_at = self.clock()
            try:
                self._watched = bool(self.redis.exists(self.watched))
            except RedisError as exc:
                self._watched = False
                log.debug("outputs stream: %s", exc)
        return self._watched

    def append(self, batch: SampleBatch) -> AppendResult:
        result = self.inner.append(batch)
        if len(batch) and self._anyone_watching():
            try:
                self.redis.xadd(
                    self.key,
                    {"i": uuid.uuid4().hex, "d": encode_batch(batch)},
                    maxlen=self.max_len,
                    approximate=True,
                )
                self.published += 1
            except RedisError as exc:
                self.failed += 1
                log.debug("outputs stream: %s", exc)
        return result

    def close(self) -> None:
        self.redis.close()


def entry_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class BusTail:
    """Follow every shard of ``bus`` and call ``on_batch`` (in a worker thread) with the
    samples of each round; see the module docstring."""

    #: how often a caught-up shard's missed entries are counted (an XINFO per shard)
    RECONCILE_S = 5.0

    def __init__(
        self,
        bus: RedisBus,
        on_batch: Callable[[SampleBatch], None],
        *,
        max_lag_s: float = 5.0,
        count: int = 64,
        block_ms: int = 1000,
        clock: Callable[[], float] = time.time,
        wants_samples: Callable[[], bool] | None = None,
        on_counts: Callable[[int, int, int | None], None] | None = None,
    ) -> None:
        self.bus = bus
        self.on_batch = on_batch
        #: while ``wants_samples()`` is False, entries are only counted (their headers read,
        #: no labels decoded) and handed to ``on_counts(batches, samples, newest ms)``
        self.wants_samples = wants_samples
        self.on_counts = on_counts
        self.max_lag_ms = max_lag_s * 1000
        self.count = count
        self.block_ms = block_ms
        self.clock = clock
        self.positions: dict[int, str] = {}
        # per shard: entries added when the position was last known to be the stream's end,
        # and entries read since then
        self._base: dict[int, int] = {}
        self._read: dict[int, int] = {}
        self._reconciled_at = 0.0
        self.batches = 0
        self.samples = 0
        self.dropped = 0
        self.skips = 0
        self._stop = asyncio.Event()

    async def _to_end(self, shard: int) -> None:
        """Move to the shard's end, counting what lies between as missed."""
        last, added = await self.bus.stream_position(shard)
        if shard in self._base:
            self.dropped += max(0, added - self._base[shard] - self._read[shard])
        self.positions[shard] = last
        self._base[shard], self._read[shard] = added, 0

    async def start(self) -> None:
        """Start at the streams' ends (what came before is history, in the store)."""
        for s in range(self.bus.shards):
            await self._to_end(s)
        self._reconciled_at = self.clock()

    async def run(self) -> None:
        """Follow the bus until ``stop``; Redis errors are logged and retried."""
        while not self._stop.is_set():
            try:
                if len(self.positions) < self.bus.shards:
                    await self.start()
                await self.step()
            except PerfintelError as exc:
                if cancel_requested():  # the error was our cancellation, turned into Redis's
                    raise asyncio.CancelledError from exc
                log.warning("live bus tail: %s; retrying in 1 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    def stop(self) -> None:
        self._stop.set()

    async def step(self) -> int:
        """One round; returns how many entries were delivered to ``on_batch``."""
        got = await self.bus.tail(self.positions, self.count, self.block_ms)
        by_shard: dict[int, list[Delivery]] = {}
        for d in got:
            by_shard.setdefault(d.shard, []).append(d)
        now_ms = self.clock() * 1000
        fresh: list[Delivery] = []
        for shard, ds in by_shard.items():
            self.positions[shard] = ds[-1].entry_id
            if now_ms - entry_ms(ds[-1].entry_id) > self.max_lag_ms:
                self.skips += 1  # behind: skip to the end, these are counted as missed
                await self._to_end(shard)
                continue
            self._read[shard] += len(ds)
            fresh.extend(ds)
        if fresh:
            await asyncio.to_thread(self._deliver, fresh)
        if self.clock() - self._reconciled_at >= self.RECONCILE_S:
            self._reconciled_at = self.clock()
            for s in range(self.bus.shards):
                if len(by_shard.get(s, ())) < self.count:  # caught up: count trimmed gaps
                    await self._reconcile(s)
        return len(fresh)

    async def _reconcile(self, shard: int) -> None:
        last, added = await self.bus.stream_position(shard)
        pos = self.positions.get(shard, "0-0")
        if last != pos and await self.bus.has_after(shard, pos):
            return  # not at the end (new entries): counted another time
        # nothing left to read: whatever was added and not read was missed (trimmed first)
        self.dropped += max(0, added - self._base[shard] - self._read[shard])
        self.positions[shard] = last
        self._base[shard], self._read[shard] = added, 0

    def _deliver(self, deliveries: Sequence[Delivery]) -> None:
        counts, wants = self.on_counts, self.wants_samples
        if counts is not None and wants is not None and not wants():
            self._count(deliveries, counts)  # nobody watches samples: count them only
            return
        parts = []
        for d in deliveries:
            try:
                parts.append(decode_batch(d.payload))
            except BatchDecodeError as exc:
                log.error("live bus tail: shard %d entry %s: %s", d.shard, d.entry_id, exc)
        if not parts:
            return
        batch = parts[0] if len(parts) == 1 else SampleBatch.concat(parts)
        self.batches += len(parts)
        self.samples += len(batch)
        try:
            self.on_batch(batch)
        except Exception:  # a view: one bad round must not stop it
            log.exception("live bus tail: delivering a batch failed")

    def _count(
        self, deliveries: Sequence[Delivery], on_counts: Callable[[int, int, int | None], None]
    ) -> None:
        batches = samples = 0
        newest: int | None = None
        for d in deliveries:
            try:
                n, ts = batch_summary(d.payload)
            except BatchDecodeError as exc:
                log.error("live bus tail: shard %d entry %s: %s", d.shard, d.entry_id, exc)
                continue
            batches += 1
            samples += n
            if ts is not None and (newest is None or ts > newest):
                newest = ts
        self.batches += batches
        self.samples += samples
        if batches:
            on_counts(batches, samples, newest)
