"""Workers read the next round while they score (``ReadAhead``), on real Redis and the
shared database: entries a read has delivered but the worker never applied are not lost
when it dies, a shard handed over carries none, and every series is scored in order,
exactly once, as by one uninterrupted detector."""

from __future__ import annotations

import asyncio

from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.leases import LeaseManager
from perfintel.bus.checkpoint import CheckpointStore
from perfintel.bus.publish import BusPublisher
from perfintel.bus.redis_streams import RedisBus
from perfintel.bus.worker import ShardWorker
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.memory import MemoryStore
from tests.bus.conftest import REDIS_URL
from tests.bus.test_worker import SERIES, _batches, _scores


def _reference(n: int, seed: int) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    store = MemoryStore()
    det = OnlineAnomalyDetection(store)
    for b in _batches(n, seed):
        det.process(b)
    return _scores(store)


def _worker(
    bus: RedisBus, engine: object, out: MemoryStore, name: str, ttl: float, **kw: object
) -> ShardWorker:
    return ShardWorker(
        bus,
        LeaseManager(engine, name, ttl=ttl),  # type: ignore[arg-type]
        CheckpointStore(engine),  # type: ignore[arg-type]
        lambda: OnlineAnomalyDetection(out),
        group="g",
        consumer=name,
        block_ms=20,
        **kw,  # type: ignore[arg-type]
    )


def test_entries_read_ahead_by_a_killed_worker_are_replayed_by_the_survivor(
    redis_prefix: str, database_url: str
) -> None:
    batches = _batches(90, seed=11)

    async def run() -> MemoryStore:
        bus = RedisBus(REDIS_URL, redis_prefix, 2)
        engine = open_database(database_url)
        out = MemoryStore()
        pub = BusPublisher(bus, group="g", max_behind=10**6)
        try:
            a = _worker(bus, engine, out, "a", 1.0, read_count=8, checkpoint_interval_s=3600)
            await a.rebalance()
            assert sorted(a.owned) == [0, 1]
            for b in batches[:40]:
                await pub.send(pub.prepare(b))
            while sum(st.applied_batches for st in a.owned.values()) < 2 * 40:
                await a.step()
            await a.checkpoint_all()  # state at batch 40, its entries acknowledged
            for b in batches[40:]:
                await pub.send(pub.prepare(b))
            while sum(st.applied_batches for st in a.owned.values()) < 2 * 70:
                await a.step()
            await asyncio.sleep(0.3)  # the read started by the last round completes
            applied = {s: st.applied_batches for s, st in a.owned.items()}
            pending = {b.shard: b.pending for b in await bus.backlog("g")}
            # "a" dies here, holding entries it applied (not acknowledged) and entries its
            # read ahead delivered to it and it never applied
            assert all(pending[s] > applied[s] - 40 for s in (0, 1)), (pending, applied)
            s = _worker(bus, engine, out, "b", 1.0, checkpoint_interval_s=3600)
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                await s.step()
                if len(s.owned) == 2 and sum(x.applied_batches for x in s.owned.values()) >= 100:
                    break
                await asyncio.sleep(0.02)
            # from a's checkpoint at 40: every later batch once, none skipped as seen
            assert {k: st.applied_batches for k, st in s.owned.items()} == {0: 50, 1: 50}
            await s.shutdown()
            assert all(x.behind == 0 for x in await bus.backlog("g"))
            return out
        finally:
            await bus.close()
            engine.dispose()

    got = _scores(asyncio.run(run()))
    want = _reference(90, seed=11)
    assert set(got) == set(want) and len(want) == len(SERIES)
    for labels, samples in want.items():
        assert got[labels] == samples, labels


def test_shards_handed_over_between_running_workers_keep_every_series_in_order(
    redis_prefix: str, database_url: str
) -> None:
    batches = _batches(150, seed=12)

    async def run() -> tuple[MemoryStore, float]:
        bus = RedisBus(REDIS_URL, redis_prefix, 4)
        engine = open_database(database_url)
        out = MemoryStore()
        pub = BusPublisher(bus, group="g", max_behind=10**6)
        loop = asyncio.get_running_loop()
        # a long TTL: a shard handed over with entries still pending for its old owner
        # would wait 60 s to be claimed, far past this test's deadline
        kw = {"read_count": 4, "checkpoint_interval_s": 0.3, "rebalance_interval_s": 0.2}
        a = _worker(bus, engine, out, "a", 60.0, **kw)
        b = _worker(bus, engine, out, "b", 60.0, **kw)
        tasks = [asyncio.create_task(a.run())]
        try:
            for k, batch in enumerate(batches):
                await pub.send(pub.prepare(batch))
                if k == 40:  # b joins: a hands it half the shards while both read ahead
                    tasks.append(asyncio.create_task(b.run()))
                await asyncio.sleep(0.005)
            t0 = loop.time()
            while loop.time() - t0 < 20:
                backlog = await bus.backlog("g")
                if all(x.lag == 0 for x in backlog) and len(a.owned) == len(b.owned) == 2:
                    scored = a.samples_scored + b.samples_scored
                    if scored >= len(batches) * len(SERIES):
                        break
                await asyncio.sleep(0.05)
            drained = loop.time() - t0
        finally:
            a.stop()
            b.stop()
            await asyncio.gather(*tasks)
            assert all(x.behind == 0 for x in await bus.backlog("g"))
            await bus.close()
            engine.dispose()
        return out, drained

    out, drained = asyncio.run(run())
    assert drained < 20
    got = _scores(out)
    want = _reference(150, seed=12)
    assert set(got) == set(want)
    for labels, samples in want.items():
        assert got[labels] == samples, labels
