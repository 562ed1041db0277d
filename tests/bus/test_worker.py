"""Bus workers on real Redis and the shared database (SQLite and PostgreSQL): a worker
dies, the survivor continues from the checkpointed state; a batch is applied once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.leases import LeaseManager
from perfintel.batch import SampleBatch
from perfintel.bus.checkpoint import Checkpoint, CheckpointStore
from perfintel.bus.codec import encode_batch
from perfintel.bus.publish import BusPublisher
from perfintel.bus.redis_streams import RedisBus
from perfintel.bus.worker import ShardWorker
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.memory import MemoryStore
from tests.bus.conftest import REDIS_URL

SERIES = [label_set({"__name__": "latency", "host": f"h{i}"}) for i in range(12)]
STEP_MS = 60_000


def _batches(n: int, seed: int) -> list[SampleBatch]:
    """``n`` batches, each one sample of every series; a spike here and there."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        vals = 100 + 10 * np.sin(np.arange(len(SERIES)) + k / 5) + rng.normal(0, 2, len(SERIES))
        if k % 37 == 36:
            vals[k % len(SERIES)] += 80
        out.append(
            SampleBatch(
                list(SERIES),
                np.arange(len(SERIES), dtype=np.int32),
                np.full(len(SERIES), 1_700_000_000_000 + k * STEP_MS, np.int64),
                vals,
            )
        )
    return out


def _scores(store: MemoryStore) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    return {
        s.labels: list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))
        for s in store.select(parse_selector("anomaly_score"), 0, 2**62)
    }


def _manual_worker(
    bus: RedisBus, engine: Engine, name: str, detector: Callable[[], OnlineAnomalyDetection]
) -> ShardWorker:
    """A worker of group ``g`` that checkpoints only when the test says (no interval)."""
    return ShardWorker(
        bus,
        LeaseManager(engine, name, ttl=1.0),
        CheckpointStore(engine),
        detector,
        group="g",
        consumer=name,
        checkpoint_interval_s=3600,
        block_ms=20,
    )


def test_survivor_continues_from_the_dead_workers_checkpoint(
    redis_prefix: str, database_url: str
) -> None:
    batches = _batches(120, seed=7)
    reference = MemoryStore()
    ref = OnlineAnomalyDetection(reference)
    for b in batches:
        ref.process(b)

    async def run() -> MemoryStore:
        bus = RedisBus(REDIS_URL, redis_prefix, 4)
        engine = open_database(database_url)
        out = MemoryStore()

        def worker(name: str) -> ShardWorker:
            return _manual_worker(bus, engine, name, lambda: OnlineAnomalyDetection(out))

        pub = BusPublisher(bus, group="g", max_behind=10**6)
        try:
            a = worker("a")
            await a.rebalance()
            assert sorted(a.owned) == [0, 1, 2, 3]
            for b in batches[:50]:
                await pub.send(pub.prepare(b))
            while sum(st.applied_batches for st in a.owned.values()) < 4 * 50:
                await a.step()
            await a.checkpoint_all()  # state at batch 50, entries acked
            for b in batches[50:80]:
                await pub.send(pub.prepare(b))
            while sum(st.applied_batches for st in a.owned.values()) < 4 * 80:
                await a.step()
            # "a" dies here: batches 50..79 applied but neither checkpointed nor acked
            assert max(x.pending for x in await bus.backlog("g")) == 30
            for b in batches[80:]:
                await pub.send(pub.prepare(b))
            s = worker("b")
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                await s.step()
                done = sum(st.applied_batches for st in s.owned.values())
                if len(s.owned) == 4 and done >= 4 * 70:
                    break
                await asyncio.sleep(0.05)
            assert sorted(s.owned) == [0, 1, 2, 3]
            # it replayed a's unacknowledged 30 batches per shard from a's checkpoint, then 40 new
            assert sum(st.applied_batches for st in s.owned.values()) == 4 * 70
            await s.shutdown()
            assert all(x.behind == 0 for x in await bus.backlog("g"))
            assert await bus.trim() == 4 * 120
            return out
        finally:
            await bus.close()
            engine.dispose()

    got = _scores(asyncio.run(run()))
    want = _scores(reference)
    assert set(got) == set(want) and len(want) == len(SERIES)
    for labels, samples in want.items():
        # identical to one uninterrupted detector: the state carried over, not learnt anew
        assert got[labels] == samples, labels


def test_a_batch_published_twice_is_applied_once(redis_prefix: str, database_url: str) -> None:
    async def run() -> tuple[int, int, float]:
        bus = RedisBus(REDIS_URL, redis_prefix, 1)
        engine = open_database(database_url)
        try:
            det: list[OnlineAnomalyDetection] = []

            def make() -> OnlineAnomalyDetection:
                det.append(OnlineAnomalyDetection(MemoryStore()))
                return det[-1]

            w = ShardWorker(
                bus,
                LeaseManager(engine, "w", ttl=5),
                CheckpointStore(engine),
                make,
                group="g",
                consumer="w",
                block_ms=20,
            )
            await w.rebalance()
            b = _batches(2, seed=1)
            await bus.publish(0, "same", encode_batch(b[0]))
            await bus.publish(0, "same", encode_batch(b[0]))  # an ingest retry
            await bus.publish(0, "other", encode_batch(b[1]))
            while sum(w.stats()[0]) < 3:
                await w.step()
            applied, skipped = w.stats()[0]
            await w.shutdown()
            return applied, skipped, det[0].metrics.updates.get()
        finally:
            await bus.close()
            engine.dispose()

    applied, skipped, updates = asyncio.run(run())
    assert (applied, skipped) == (2, 1)
    assert updates == 2 * len(SERIES)


def _subset(b: SampleBatch, rows: range) -> SampleBatch:
    keep = np.isin(b.series_idx, list(rows))
    return SampleBatch(b.series, b.series_idx[keep], b.timestamps[keep], b.values[keep])


@pytest.mark.parametrize("keyed", [False, True], ids=["labels", "keyed-compact"])
def test_incremental_checkpoints_write_only_changed_series_and_restore_exactly(
    redis_prefix: str, database_url: str, keyed: bool
) -> None:
    """``keyed``: the detector as ``--role worker`` runs it (compact state, series by key,
    no labels kept: checkpoints keyed by the series key)."""
    full = _batches(100, seed=11)
    # 30 rounds of every series, 30 of series 0-3 only, 20 of 4-6 only, 20 of every series
    batches = [
        *full[:30],
        *(_subset(b, range(4)) for b in full[30:60]),
        *(_subset(b, range(4, 7)) for b in full[60:80]),
        *full[80:],
    ]
    reference = MemoryStore()

    def detector(store: MemoryStore) -> OnlineAnomalyDetection:
        return OnlineAnomalyDetection(store, compact=keyed, keep_labels=not keyed)

    ref = detector(reference)
    for b in batches:
        ref.process(b)

    async def run() -> tuple[MemoryStore, list[int], list[int], int]:
        bus = RedisBus(REDIS_URL, redis_prefix, 1)
        engine = open_database(database_url)
        out = MemoryStore()

        def worker(name: str) -> ShardWorker:
            return _manual_worker(bus, engine, name, lambda: detector(out))

        def saved() -> tuple[int, list[int]]:
            with engine.connect() as conn:
                full_len = conn.execute(sa.text("SELECT length(state) FROM bus_checkpoints")).one()
                parts = conn.execute(
                    sa.text("SELECT length(state) FROM bus_checkpoint_parts ORDER BY seq")
                ).all()
            return int(full_len[0]), [int(p[0]) for p in parts]

        pub = BusPublisher(bus, group="g", max_behind=10**6)
        try:
            a = worker("a")
            await a.rebalance()
            sizes = []
            for lo, hi in ((0, 30), (30, 60), (60, 80)):
                for b in batches[lo:hi]:
                    await pub.send(pub.prepare(b))
                while a.owned[0].applied_batches < hi:
                    await a.step()
                await a.checkpoint_all()
                full_len, parts = saved()
                sizes.append(full_len)
            assert len(parts) == 2  # two parts after the first full state
            for b in batches[80:90]:
                await pub.send(pub.prepare(b))
            while a.owned[0].applied_batches < 90:
                await a.step()
            # "a" dies: 10 rounds applied, not checkpointed; the survivor restores the full
            # state plus both parts, then replays them
            for b in batches[90:]:
                await pub.send(pub.prepare(b))
            s = worker("b")
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                await s.step()
                if 0 in s.owned and s.owned[0].applied_batches >= 20:
                    break
                await asyncio.sleep(0.05)
            assert s.owned[0].applied_batches == 20
            await s.shutdown()  # its first checkpoint of the shard is full: parts dropped
            _, left = saved()
            return out, sizes, parts, len(left)
        finally:
            await bus.close()
            engine.dispose()

    out, sizes, parts, left = asyncio.run(run())
    state_len = sizes[0]
    assert sizes == [state_len] * 3  # the full state was written once
    # a part holds only the changed series (4 and 3 of 12), so it is far smaller
    assert parts[0] < state_len / 2 and parts[1] < parts[0]
    assert left == 0
    got, want = _scores(out), _scores(reference)
    assert set(got) == set(want) and len(want) == len(SERIES)
    for labels, samples in want.items():
        assert got[labels] == samples, labels


def test_a_shard_handed_back_while_its_lease_is_renewed_is_free_for_others(
    redis_prefix: str, database_url: str
) -> None:
    """The lease keeper renews concurrently with rebalancing: a shard handed back between
    the keeper's snapshot and its renewal must not stay held for another TTL."""

    async def run() -> tuple[bool, bool]:
        bus = RedisBus(REDIS_URL, redis_prefix, 2)
        engine = open_database(database_url)
        try:
            leases = LeaseManager(engine, "a", ttl=60)
            w = ShardWorker(
                bus,
                leases,
                CheckpointStore(engine),
                lambda: OnlineAnomalyDetection(MemoryStore()),
                group="g",
                consumer="a",
            )
            await w.rebalance()
            assert sorted(w.owned) == [0, 1]
            real_renew = leases.renew
            handed_back: list[int] = []

            def renew_racing_a_hand_back(lease):  # type: ignore[no-untyped-def]
                if lease.name.endswith(":0") and not handed_back:
                    w._release(0)  # what rebalance does for a surplus shard, meanwhile
                    handed_back.append(0)
                return real_renew(lease)

            leases.renew = renew_racing_a_hand_back  # type: ignore[method-assign]
            await w._renew_held()
            other = LeaseManager(engine, "b", ttl=60)
            free = await asyncio.to_thread(other.acquire, "bus:g:0")
            kept = await asyncio.to_thread(other.acquire, "bus:g:1")
            return free is not None, kept is None
        finally:
            await bus.close()
            engine.dispose()

    free, kept = asyncio.run(run())
    assert free  # shard 0 was handed back: another worker takes it at once
    assert kept  # shard 1 is still "a"'s, renewed


def test_a_checkpoint_stored_before_compression_still_loads(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        leases = LeaseManager(engine, "w", ttl=60)
        lease = leases.acquire("bus:g:0")
        assert lease is not None
        det = OnlineAnomalyDetection(MemoryStore(), compact=True, keep_labels=False)
        for b in _batches(5, seed=3):
            det.process(b)
        state = det.dump_state()
        store = CheckpointStore(engine)
        stored = store.save("bus:g:0", lease, Checkpoint("5-0", ["b5"], state))
        assert stored < len(state) / 2  # compressed
        with engine.begin() as conn:  # as a worker without compression wrote it
            conn.execute(sa.text("UPDATE bus_checkpoints SET state = :s"), {"s": state})
        cp = store.load("bus:g:0")
        assert cp is not None and cp.state == state and cp.last_entry == "5-0"
        again = OnlineAnomalyDetection(MemoryStore(), compact=True, keep_labels=False)
        assert again.restore_state(cp.state) == len(SERIES)
    finally:
        engine.dispose()
