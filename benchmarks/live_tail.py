"""An api process's live stream fed from the bus (``perfintel.bus.tail``): how fast one tail
follows the shard streams, and that it stays bounded (and counts exactly) when it cannot.

1. Follow: ``--batches`` batches of ``--series`` series (one sample each) are published
   to ``--shards`` shards of a fresh stream prefix on Redis (127.0.0.1:6379) beforehand;
   one ``BusTail`` (lag limit off) delivers them to a ``LiveHub``, once with one
   WebSocket-like subscription (a selector matching a tenth of the series: entries are
   decoded), once with none (entries only counted from their headers). Samples/s from
   the first read until every entry was delivered.
2. Flood: a publisher thread (its own loop and connection) pushes as fast as it can for
   ``--flood-seconds`` while the tail, with a subscriber, follows with
   ``bus.live_max_lag`` = ``--max-lag``; printed: entries published, delivered, counted
   as dropped (delivered + dropped must equal published), and the process's RSS growth
   (bounded: the tail reads at most 64 entries a shard a round).

    python benchmarks/live_tail.py
    python benchmarks/live_tail.py --batches 2000 --series 500 --flood-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.batch import SampleBatch  # noqa: E402
from perfintel.bus.codec import encode_batch  # noqa: E402
from perfintel.bus.redis_streams import RedisBus  # noqa: E402
from perfintel.bus.sharding import split_by_shard  # noqa: E402
from perfintel.bus.tail import BusTail  # noqa: E402
from perfintel.live.hub import LiveHub  # noqa: E402
from perfintel.model import label_set, parse_selector  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"


def payloads(series: int, shards: int, k: int) -> list[tuple[int, str, bytes]]:
    labels = [label_set({"__name__": "lat", "host": f"h{i}"}) for i in range(series)]
    batch = SampleBatch(
        labels,
        np.arange(series, dtype=np.int32),
        np.full(series, int(time.time() * 1000), np.int64),
        np.full(series, float(k)),
    )
    return [(s, f"b{k}-{s}", encode_batch(b)) for s, b in split_by_shard(batch, shards).items()]


async def follow(args: argparse.Namespace, watched: bool) -> None:
    prefix = f"pi-bench-tail-{uuid.uuid4().hex[:8]}"
    bus = RedisBus(REDIS, prefix, args.shards)
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    sub = hub.subscribe([parse_selector('lat{host=~"h.*0"}')], ["samples"]) if watched else None
    tail = BusTail(
        bus,
        hub.publish_samples,
        max_lag_s=1e9,
        block_ms=100,
        wants_samples=hub.wants_samples,
        on_counts=hub.count_ingested,
    )
    try:
        await tail.start()
        entries = 0
        for k in range(args.batches):
            e = payloads(args.series, args.shards, k)
            await bus.publish_many(e)
            entries += len(e)
        total = args.batches * args.series
        t0 = time.perf_counter()
        while tail.samples < total:
            await tail.step()
        dt = time.perf_counter() - t0
        what = "a client watches samples (decoded)" if watched else "nobody watches (counted)"
        print(
            f"follow, {what}: {total:,} samples in {entries:,} entries over {args.shards} "
            f"shards: {dt:.2f} s, {total / dt:,.0f} samples/s, {entries / dt:,.0f} entries/s"
            + (f", client queue {len(sub.queue)}" if sub is not None else "")
        )
    finally:
        await bus.delete_all()
        await bus.close()


def publish_thread(prefix: str, args: argparse.Namespace, stop: threading.Event) -> list[int]:
    """Publish from another thread with its own loop and connection, as fast as it can."""
    published = [0]

    async def run() -> None:
        bus = RedisBus(REDIS, prefix, args.shards)
        ready = [payloads(args.series, args.shards, j) for j in range(16)]
        k = 0
        while not stop.is_set():
            e = ready[k % 16]
            await bus.publish_many([(s, f"f{k}-{s}", p) for s, _, p in e])
            published[0] += len(e)
            k += 1
        await bus.close()

    t = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    t.start()
    published.append(0)
    publish_thread.thread = t  # type: ignore[attr-defined]
    return published


async def flood(args: argparse.Namespace) -> None:
    prefix = f"pi-bench-tail-{uuid.uuid4().hex[:8]}"
    bus = RedisBus(REDIS, prefix, args.shards)
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    sub = hub.subscribe([parse_selector('lat{host=~"h.*0"}')], ["samples"])
    assert sub is not None
    tail = BusTail(bus, hub.publish_samples, max_lag_s=args.max_lag, block_ms=100)
    proc = psutil.Process(os.getpid())
    stop = threading.Event()
    try:
        await tail.start()
        rss0 = peak = proc.memory_info().rss
        published = publish_thread(prefix, args, stop)
        end = time.monotonic() + args.flood_seconds
        while time.monotonic() < end:
            await tail.step()
            sub.queue.clear()  # the client reads everything
            peak = max(peak, proc.memory_info().rss)
        stop.set()
        publish_thread.thread.join()  # type: ignore[attr-defined]
        delivered_in_flood = tail.batches
        # catch up on what is left, then count: every entry delivered or counted as dropped
        tail.max_lag_ms = 1e12
        while await tail.step():
            pass
        tail.RECONCILE_S = 0.0
        await tail.step()
        print(
            f"flood ({args.flood_seconds:.0f} s, publisher in another thread, max lag "
            f"{args.max_lag} s): published {published[0]:,} entries; the tail delivered "
            f"{delivered_in_flood:,} during the flood ({tail.batches:,} with the catch-up), "
            f"counted dropped {tail.dropped:,}, skips {tail.skips}; delivered + dropped = "
            f"{tail.batches + tail.dropped:,}; RSS growth during the flood "
            f"{(peak - rss0) / 2**20:.1f} MiB"
        )
    finally:
        await bus.delete_all()
        await bus.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--max-lag", type=float, default=1.0)
    args = ap.parse_args()
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    asyncio.run(follow(args, watched=True))
    asyncio.run(follow(args, watched=False))
    asyncio.run(flood(args))


if __name__ == "__main__":
    main()
