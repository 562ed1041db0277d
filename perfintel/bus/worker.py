"""A bus worker: owns some shards, scores their batches online, checkpoints the state.

Shard ownership is a lease per shard (``bus:<group>:<shard>``) in the shared
state database, so each series' detector state lives in exactly one worker.
Every worker also holds a membership lease (``bus:<group>:member:<consumer>``);
it aims at ``ceil(shards / live members)`` shards, takes free or expired
shard leases up to that, and hands surplus shards back (checkpoint, ack,
release) so a worker that joins gets its share.

Per owned shard a worker keeps one ``OnlineAnomalyDetection`` (its outputs
written through the given ``SampleWriter``). Entries are acknowledged only
once a checkpoint that covers them is committed; a worker that dies leaves
them pending, and the next owner restores the checkpoint (state, last entry
id, recent batch ids), claims them with ``XAUTOCLAIM`` after ``claim_idle``
and replays them: entries up to the checkpoint's last id, and batch ids seen
already, are skipped (idempotent), so the survivor continues exactly from
the dead worker's checkpointed state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import math
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from perfintel.alerting.state.leases import Lease, LeaseManager
from perfintel.background import cancel_requested, pause
from perfintel.batch import SampleBatch
from perfintel.bus.base import Bus, Delivery, ReadAhead, entry_order
from perfintel.bus.checkpoint import Checkpoint, CheckpointStore
from perfintel.bus.codec import BatchDecodeError, decode_keyed
from perfintel.errors import LeaseLostError, PerfintelError
from perfintel.model import LabelSet
from perfintel.performance.online import OnlineAnomalyDetection

log = logging.getLogger(__name__)

#: batch ids remembered per shard (idempotency against a batch published twice)
RECENT_BATCH_IDS = 4096
#: allocations from this size on are mapped and unmapped on their own (glibc)
MMAP_THRESHOLD = 1 << 20


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def limit_allocator_slack() -> None:
    """Return freed large buffers to the system at once (glibc only; elsewhere a no-op).

    glibc raises its mmap threshold to the size of the largest block freed (up to 32
    MiB), after which the scratch arrays of scoring and the buffers of a checkpoint
    come from the heap and stay resident when freed: at a million series that slack
    was about 300 bytes a series. A fixed threshold (which also stops the adjusting)
    keeps a worker's memory what its series need. Process-wide; idempotent."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD


def _trim() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@dataclass
class ShardState:
    shard: int
    lease: Lease
    detector: OnlineAnomalyDetection
    last_entry: str = "0-0"
    applied: OrderedDict[str, None] = field(default_factory=OrderedDict)
    unacked: list[Delivery] = field(default_factory=list)
    applied_batches: int = 0
    skipped_batches: int = 0
    #: False while entries of the shard are pending for another consumer (not yet idle
    #: long enough to claim): new entries wait, so the series stay in time order
    ready: bool = False
    #: bytes of this worker's last full checkpoint of the shard (0: none yet, the next
    #: checkpoint is full) and of the parts written since
    full_bytes: int = 0
    parts_bytes: int = 0


class ShardWorker:
    def __init__(
        self,
        bus: Bus,
        leases: LeaseManager,
        checkpoints: CheckpointStore,
        make_detector: Callable[[], OnlineAnomalyDetection],
        *,
        group: str = "workers",
        consumer: str,
        claim_idle_s: float | None = None,
        checkpoint_interval_s: float = 10.0,
        read_count: int = 64,
        block_ms: int = 200,
        clock: Callable[[], float] = time.monotonic,
        incremental: bool = True,
        rebalance_interval_s: float | None = None,
        parts_ratio: float = 2.0,
    ) -> None:
        self.bus = bus
        self.leases = leases
        self.checkpoints = checkpoints
        self.make_detector = make_detector
        self.group = group
        self.consumer = consumer
        # a dead owner's entries are idle for at least the lease TTL when its lease is taken
        self.claim_idle_ms = int(1000 * (claim_idle_s if claim_idle_s is not None else leases.ttl))
        self.checkpoint_interval_s = checkpoint_interval_s
        self.read_count = read_count
        self.block_ms = block_ms
        self.clock = clock
        #: False: every checkpoint writes the whole shard state (for comparison)
        self.incremental = incremental
        #: a full state replaces the parts once they add up to this many full states (a
        #: successor reads at most 1 + ratio full states; each series changed once per
        #: scrape is written about (1 + ratio) / ratio times per scrape interval)
        self.parts_ratio = parts_ratio
        limit_allocator_slack()
        #: leases renewed and shards balanced this often (default: a third of the TTL)
        self.rebalance_interval_s = (
            rebalance_interval_s if rebalance_interval_s is not None else leases.ttl / 3
        )
        self.owned: dict[int, ShardState] = {}
        self._member: Lease | None = None
        self._checkpointed_at = clock()
        self._balanced_at = -math.inf
        self._stop = asyncio.Event()
        #: the next round's read, in flight while this round scores
        self._reader = ReadAhead(bus, group, consumer)
        self.samples_scored = 0
        #: bytes of detector state written to checkpoints (full states and parts, compressed)
        self.checkpoint_bytes = 0
        #: wall seconds spent in checkpoints (dumping, saving, acknowledging)
        self.checkpoint_seconds = 0.0

    # -- names --------------------------------------------------------------------------
    def _shard_lease(self, shard: int) -> str:
        return f"bus:{self.group}:{shard}"

    @property
    def _member_prefix(self) -> str:
        return f"bus:{self.group}:member:"

    # -- life cycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Work until ``stop``; then checkpoint and hand every shard back."""
        keeper = asyncio.create_task(self._keep_leases())
        try:
            while not self._stop.is_set():
                try:
                    await self.step()
                except PerfintelError as exc:  # Redis or the database away: retry, keep state
                    if cancel_requested():  # our cancellation, turned into Redis's error
                        raise asyncio.CancelledError from exc
                    log.warning("bus worker: %s; retrying in 1 s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 1.0)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            try:
                await self.shutdown()
            except PerfintelError as exc:  # the leases expire and successors replay
                log.warning("bus worker shutdown: %s", exc)

    def stop(self) -> None:
        self._stop.set()

    async def step(self) -> int:
        """One round: rebalance when due, read and apply, checkpoint when due; returns
        how many entries were read."""
        if self.clock() - self._balanced_at >= self.rebalance_interval_s:
            # what is read is applied before shards move: a shard handed back carries
            # nothing pending for us, so its next owner need not wait to claim it
            await self._apply_read_ahead()
            await self.rebalance()
        for st in [st for st in self.owned.values() if not st.ready]:
            await self._claim(st)
        ready = sorted(s for s, st in self.owned.items() if st.ready)
        deliveries = await self._reader.take()
        if deliveries is None:
            deliveries = await self.bus.consume(
                self.group, self.consumer, ready, self.read_count, self.block_ms
            )
        if ready:  # the next round's entries arrive while this round scores
            self._reader.start(ready, self.read_count, self.block_ms)
        else:
            await asyncio.sleep(self.block_ms / 1000)
        await self._apply_all(deliveries)
        if self.clock() - self._checkpointed_at >= self.checkpoint_interval_s:
            await self.checkpoint_all()
        return len(deliveries)

    async def _apply_read_ahead(self) -> None:
        deliveries = await self._reader.take()
        if deliveries:
            await self._apply_all(deliveries)

    async def shutdown(self) -> None:
        try:
            await self._apply_read_ahead()  # then checkpointed and acknowledged
        except PerfintelError as exc:  # nothing read: checkpoint what was applied
            log.warning("bus worker: last read: %s", exc)
        await self.checkpoint_all()
        for shard in list(self.owned):
            await asyncio.to_thread(self._release, shard)
        if self._member is not None:
            await asyncio.to_thread(self.leases.release, self._member)
            self._member = None

    # -- ownership ----------------------------------------------------------------------
    async def rebalance(self) -> None:
        self._balanced_at = self.clock()
        member = await asyncio.to_thread(self._renew_member)
        if member is None:
            return
        live = max(1, await asyncio.to_thread(self.leases.count_live, self._member_prefix))
        target = math.ceil(self.bus.shards / live)
        for shard, st in list(self.owned.items()):  # keep what we have, or notice its loss
            renewed = await asyncio.to_thread(self.leases.renew, st.lease)
            if renewed is None:
                log.warning("lost shard %d (lease taken over); dropping its state", shard)
                del self.owned[shard]
            else:
                st.lease = renewed
        while len(self.owned) > target:  # hand surplus shards to the newcomers
            shard = max(self.owned)
            await self._checkpoint(self.owned[shard])
            await asyncio.to_thread(self._release, shard)
        start = zlib.crc32(self.consumer.encode()) % self.bus.shards
        for k in range(self.bus.shards):
            if len(self.owned) >= target:
                break
            shard = (start + k) % self.bus.shards
            if shard in self.owned:
                continue
            lease = await asyncio.to_thread(self.leases.acquire, self._shard_lease(shard))
            if lease is not None:
                await self._take(shard, lease)

    async def _keep_leases(self) -> None:
        """Renew the leases held on the rebalancing schedule even while a round runs
        long (scoring or checkpointing a large shard can take longer than the TTL, and
        a live worker must not lose its shards for it). A lease found lost is left to
        ``rebalance``, which drops the shard."""
        while True:
            await pause(self.rebalance_interval_s)
            try:
                await self._renew_held()
            except PerfintelError as exc:
                log.warning("bus worker: renewing leases: %s", exc)

    async def _renew_held(self) -> None:
        if self._member is not None:
            self._member = await asyncio.to_thread(self.leases.renew, self._member)
        for shard, st in list(self.owned.items()):
            renewed = await asyncio.to_thread(self.leases.renew, st.lease)
            if renewed is None:
                continue
            if self.owned.get(shard) is st:
                st.lease = renewed
            else:  # handed back while we renewed it: let it go again (a no-op if taken)
                await asyncio.to_thread(self.leases.release, renewed)

    def _renew_member(self) -> Lease | None:
        name = self._member_prefix + self.consumer
        m = self._member
        self._member = (self.leases.renew(m) if m else None) or self.leases.acquire(name)
        return self._member

    def _release(self, shard: int) -> None:
        st = self.owned.pop(shard, None)
        if st is not None:
            self.leases.release(st.lease)

    async def _take(self, shard: int, lease: Lease) -> None:
        """Restore the shard's checkpoint, then replay what its last owner left pending."""
        detector = self.make_detector()
        st = ShardState(shard, lease, detector)
        cp = await asyncio.to_thread(self.checkpoints.load, self._shard_lease(shard))
        if cp is not None:
            restored = await asyncio.to_thread(detector.restore_state, cp.state)
            for part in cp.parts:
                await asyncio.to_thread(detector.restore_state, part, "checkpoint part", True)
            st.last_entry = cp.last_entry
            st.applied = OrderedDict.fromkeys(cp.applied)
            log.info(
                "shard %d: restored %d series from the checkpoint at entry %s",
                shard,
                restored,
                cp.last_entry,
            )
        self.owned[shard] = st
        await self._claim(st)

    async def _claim(self, st: ShardState) -> None:
        """Replay the previous owner's pending entries, oldest first, once they are idle
        for ``claim_idle``; the shard is ready when none is left pending for another."""
        while True:
            claimed = await self.bus.claim_stale(
                self.group, self.consumer, st.shard, self.claim_idle_ms, 256
            )
            await self._apply_all(sorted(claimed, key=lambda d: entry_order(d.entry_id)))
            if len(claimed) < 256:
                break
        pending = (await self.bus.backlog(self.group))[st.shard].pending
        st.ready = pending <= len(st.unacked)  # everything pending is ours

    # -- applying -----------------------------------------------------------------------
    async def _apply_all(self, deliveries: Sequence[Delivery]) -> None:
        """Apply what is new, per shard in entry order; the batches of one shard are scored
        in one pass (one detector call per shard and round, not per entry)."""
        fresh: dict[int, list[tuple[SampleBatch, np.ndarray]]] = {}
        for d in deliveries:
            st = self.owned.get(d.shard)
            if st is None:
                continue  # not ours any more: stays pending for the new owner to claim
            st.unacked.append(d)
            if d.batch_id in st.applied or entry_order(d.entry_id) <= entry_order(st.last_entry):
                st.skipped_batches += 1
                continue
            try:
                fresh.setdefault(d.shard, []).append(decode_keyed(d.payload))
            except BatchDecodeError as exc:
                log.error("shard %d entry %s: %s (skipped)", d.shard, d.entry_id, exc)
            st.applied_batches += 1
            st.last_entry = d.entry_id
            st.applied[d.batch_id] = None
            while len(st.applied) > RECENT_BATCH_IDS:
                st.applied.popitem(last=False)
        for shard, parts in fresh.items():
            batch, keys = parts[0] if len(parts) == 1 else _join(parts)
            try:
                await asyncio.to_thread(self.owned[shard].detector.process, batch, keys)
            except PerfintelError as exc:
                log.warning("shard %d: scoring failed: %s", shard, exc)
            self.samples_scored += len(batch)

    # -- checkpoints --------------------------------------------------------------------
    async def checkpoint_all(self) -> None:
        self._checkpointed_at = self.clock()
        t0 = time.perf_counter()
        for st in list(self.owned.values()):
            await self._checkpoint(st)
        await asyncio.to_thread(_trim)  # the dumps' buffers: back to the system
        self.checkpoint_seconds += time.perf_counter() - t0

    async def _checkpoint(self, st: ShardState) -> None:
        """Save the shard's state with its stream position, then acknowledge what it covers.

        Incremental: only the series scored since the previous checkpoint are written (a
        part), unless this worker has not written a full state of the shard yet, most
        series changed (a part would be no smaller), or the parts since the last full
        state add up to ``parts_ratio`` times its size (then a full state replaces them:
        what a successor reads stays below 1 + ``parts_ratio`` full states)."""
        if not st.unacked:
            return
        det = st.detector
        changed = det.take_changed()
        total = det.series_count
        full = (
            not self.incremental
            or st.full_bytes == 0
            or 2 * len(changed) >= total
            or st.parts_bytes >= self.parts_ratio * st.full_bytes
        )
        try:
            data = await asyncio.to_thread(
                partial(det.dump_state, None if full else changed, compress=True)
            )
            cp = Checkpoint(st.last_entry, list(st.applied), data, partial=not full)
            stored = await asyncio.to_thread(
                self.checkpoints.save, self._shard_lease(st.shard), st.lease, cp
            )
        except LeaseLostError as exc:
            log.warning("shard %d: %s; dropping it", st.shard, exc)
            self.owned.pop(st.shard, None)
            return
        except BaseException:
            det.mark_changed(changed)  # not saved: the next checkpoint writes them
            raise
        if full:
            st.full_bytes, st.parts_bytes = len(data), 0
        else:
            st.parts_bytes += len(data)
        self.checkpoint_bytes += stored
        # acknowledged only now: until the checkpoint is committed, a successor replays them
        await self.bus.ack(self.group, st.unacked)
        st.unacked = []

    def stats(self) -> dict[int, tuple[int, int]]:
        """Per owned shard: (batches applied, batches skipped as already applied)."""
        return {s: (st.applied_batches, st.skipped_batches) for s, st in self.owned.items()}


def _join(parts: Sequence[tuple[SampleBatch, np.ndarray]]) -> tuple[SampleBatch, np.ndarray]:
    """One batch of several entries' (a series may be listed more than once: the detector
    identifies series by key, and merging label sets would cost a dict of them)."""
    series: list[LabelSet] = []
    idx = []
    for b, _ in parts:
        idx.append(np.asarray(b.series_idx, np.int32) + len(series))
        series.extend(b.series)
    batch = SampleBatch(
        series,
        np.concatenate(idx),
        np.concatenate([b.timestamps for b, _ in parts]),
        np.concatenate([b.values for b, _ in parts]),
    )
    return batch, np.concatenate([k for _, k in parts])
