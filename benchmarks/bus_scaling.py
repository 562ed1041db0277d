"""Scale-out over the Redis Streams bus: scoring throughput per worker count, ingest rate
per process, worker memory per series.

1. Online scoring: ``--series`` series x ``--steps`` timestamps on ``--shards`` shards of a
   fresh stream prefix on Redis (127.0.0.1:6379), consumed by 1, 2 (, 4) worker processes
   (``ShardWorker``, leases and checkpoints in a SQLite file). A worker writes its scores to
   a discarding writer (the store is not measured) and checkpoints every
   ``--checkpoint-interval`` (the default of ``bus.checkpoint_interval``).
   The stream is **pre-filled**: the workers start, split the shards, and are paused
   (SIGSTOP) while every batch is published; the clock starts when they are resumed
   (SIGCONT) and stops when every entry has been read (lag 0: the last round, at most 32
   entries a worker, is then in flight), so the publisher does not share the cores with
   them. ``--live`` publishes while the workers run instead (the earlier measurement).
   Each worker reports its checkpoint time and bytes; ``--full-checkpoints`` turns
   incremental checkpoints off for comparison.
2. Ingest: the CPU cost of a request's publish encoding (``encode_costs``); and
   ``perfintel serve`` as role ``all`` (one process: store + in-process detector)
   and as role ``ingest`` (store + publish to the bus), each pushed the same remote-write
   payloads by 4 client threads for ``--ingest-seconds``; samples/s per process.
3. Memory: RSS growth of one process scoring ``--mem-series`` new series (``--mem-samples``
   samples each) through ``OnlineAnomalyDetection``, per series; and the detector state
   per series.

    python benchmarks/bus_scaling.py
    python benchmarks/bus_scaling.py --series 20000 --steps 40 --workers 1 2 4

The machine's core count and load average are printed: with 2 cores, 2 workers share them
with Redis and the other sessions' processes, so the ratio is bounded below 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.alerting.state.database import open_database  # noqa: E402
from perfintel.alerting.state.leases import LeaseManager  # noqa: E402
from perfintel.batch import SampleBatch  # noqa: E402
from perfintel.bus.checkpoint import CheckpointStore  # noqa: E402
from perfintel.bus.publish import BusPublisher  # noqa: E402
from perfintel.bus.redis_streams import RedisBus  # noqa: E402
from perfintel.bus.worker import ShardWorker, limit_allocator_slack  # noqa: E402
from perfintel.ingest.remote_write import encode_remote_write  # noqa: E402
from perfintel.model import label_set  # noqa: E402
from perfintel.performance.online import OnlineAnomalyDetection  # noqa: E402
from perfintel.storage.base import AppendResult  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"


class Discard:
    def append(self, batch: SampleBatch) -> AppendResult:
        return AppendResult(accepted=len(batch))


def batches(n_series: int, steps: int, per_batch: int, seed: int = 1) -> list[SampleBatch]:
    """``steps`` rounds of one sample per series, cut into batches of ``per_batch`` series."""
    rng = np.random.default_rng(seed)
    series = [label_set({"__name__": "bench_latency", "pod": f"p{i}"}) for i in range(n_series)]
    t0 = (int(time.time()) - 86400) * 1000
    out = []
    for k in range(steps):
        vals = 100 + 10 * np.sin(np.arange(n_series) / 9 + k / 5) + rng.normal(0, 2, n_series)
        for lo in range(0, n_series, per_batch):
            hi = min(n_series, lo + per_batch)
            out.append(
                SampleBatch(
                    series[lo:hi],
                    np.arange(hi - lo, dtype=np.int32),
                    np.full(hi - lo, t0 + k * 60_000, np.int64),
                    vals[lo:hi],
                )
            )
    return out


# -- 1. scoring ------------------------------------------------------------------------


def worker_main(
    prefix: str, shards: int, db: str, name: str, checkpoint_s: float, inc: str, compact: str
) -> None:
    async def run() -> None:
        bus = RedisBus(REDIS, prefix, shards)
        engine = open_database(db)
        w = ShardWorker(
            bus,
            # long leases: the workers are paused while the stream is filled
            LeaseManager(engine, name, ttl=300.0),
            CheckpointStore(engine),
            lambda: OnlineAnomalyDetection(Discard(), max_series=10**7, compact=compact == "1"),
            group="bench",
            consumer=name,
            checkpoint_interval_s=checkpoint_s,
            read_count=32,
            block_ms=50,
            incremental=inc == "1",
            rebalance_interval_s=1.0,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(15, stop.set)
        task = asyncio.create_task(w.run())

        async def report() -> None:  # the driver stops the clock when all are scored
            while True:
                await bus.redis.set(f"{prefix}:scored:{name}", w.samples_scored)
                await asyncio.sleep(0.01)

        reporter = asyncio.create_task(report())
        await stop.wait()
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await bus.redis.delete(f"{prefix}:scored:{name}")
        cp_s, cp_b = w.checkpoint_seconds, w.checkpoint_bytes  # before the final checkpoint
        w.stop()
        await task
        await bus.close()
        engine.dispose()
        print(
            json.dumps(
                {"worker": name, "scored": w.samples_scored, "cp_s": cp_s, "cp_bytes": cp_b}
            ),
            flush=True,
        )

    asyncio.run(run())


def holders(db: str) -> dict[str, str]:
    """Live shard leases (not members): lease name -> holder."""
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    prefix = "bus:bench:"
    live = LeaseManager(engine, "bench", 1.0).live(prefix)
    engine.dispose()
    return {n: lease.holder for n, lease in live.items() if n[len(prefix) :].isdigit()}


def redis_cpu() -> float:
    """CPU seconds (user + system) the Redis server has used, all clients together."""
    import redis

    r = redis.Redis.from_url(REDIS)
    info = r.info("cpu")
    r.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def scoring(
    n_workers: int,
    data: list[SampleBatch],
    shards: int,
    tmp: Path,
    checkpoint_s: float,
    *,
    live: bool = False,
    incremental: bool = True,
    compact: bool = False,
) -> tuple[float, list[dict[str, float]], dict[str, float]]:
    """(seconds to score every sample, per-worker stats, CPU seconds of the workers and of
    the Redis server in that time)."""
    prefix = f"perfintel-bench-{uuid.uuid4().hex[:8]}"
    db = f"sqlite:///{tmp / f'state-{n_workers}-{uuid.uuid4().hex[:6]}.db'}"
    open_database(db).dispose()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                prefix,
                str(shards),
                db,
                f"w{i}",
                str(checkpoint_s),
                "1" if incremental else "0",
                "1" if compact else "0",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n_workers)
    ]

    async def drive() -> float:
        bus = RedisBus(REDIS, prefix, shards)
        pub = BusPublisher(bus, group="bench", max_behind=10**9)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every worker has its share, kernels warm
            h = holders(db)
            per = [list(h.values()).count(f"w{i}") for i in range(n_workers)]
            if len(h) == shards and max(per) <= -(-shards // n_workers):
                break  # an even split (a newcomer's share comes after a rebalance round)
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError("the workers did not split the shards within 120 s")
        await asyncio.sleep(1.0)
        prepared = [pub.prepare(b) for b in data]  # encoding is the ingest side's cost
        total = sum(len(b) for b in data)
        pids = [p.pid for p in procs]
        if not live:
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            for parts in prepared:
                await pub.send(parts)
            cpu0, redis0 = cpu_seconds(pids), redis_cpu()
            t0 = time.perf_counter()
            for p in procs:
                p.send_signal(signal.SIGCONT)
        else:
            cpu0, redis0 = cpu_seconds(pids), redis_cpu()
            t0 = time.perf_counter()
            for parts in prepared:
                await pub.send(parts)
        # done when the workers have scored every sample (each reports its count to
        # Redis every 10 ms); acks wait for the next checkpoint
        keys = [f"{prefix}:scored:w{i}" for i in range(n_workers)]
        while sum(int(v or 0) for v in await bus.redis.mget(keys)) < total:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        usage["workers_cpu"] = cpu_seconds(pids) - cpu0
        usage["redis_cpu"] = redis_cpu() - redis0
        await bus.redis.delete(*keys)
        await bus.delete_all()
        await bus.close()
        return elapsed

    stats: list[dict[str, float]] = []
    usage: dict[str, float] = {}
    try:
        elapsed = asyncio.run(drive())
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.terminate()
        for p in procs:
            try:
                out, _ = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:  # stuck: no orphans left behind
                p.kill()
                out, _ = p.communicate()
            stats.extend(json.loads(line) for line in out.splitlines() if line.startswith("{"))
    return elapsed, stats, usage


# -- 2. ingest -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ingest_rate(
    role: str, payloads: list[tuple[bytes, int]], seconds: float, tmp: Path
) -> tuple[float, float, float]:
    """(samples/s accepted by a ``perfintel serve --role role``, its CPU seconds and the
    Redis server's in that time)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFINTEL_")}
    env.update(
        PERFINTEL_ROLE=role,
        PERFINTEL_BUS__STREAM_PREFIX=f"perfintel-bench-{uuid.uuid4().hex[:8]}",
        PERFINTEL_BUS__MAX_BEHIND="1000000000",
        PERFINTEL_HOST_COLLECTOR__ENABLED="false",
        PERFINTEL_ALERTING__ENABLED="false",
    )
    log = (tmp / f"ingest-{role}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfintel",
            "serve",
            "--data-dir",
            str(tmp / f"data-{role}-{uuid.uuid4().hex[:6]}"),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        done, failed = [0], [0]
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}

        def client(k: int) -> None:
            with httpx.Client(timeout=60) as http:
                i = k
                while time.monotonic() < stop_at:
                    body, n = payloads[i % len(payloads)]
                    i += 4
                    try:
                        r = http.post(url + "/api/v1/write", content=body, headers=headers)
                    except httpx.TransportError:  # a reset keep-alive connection: count it
                        with lock:
                            failed[0] += 1
                        continue
                    if r.status_code == 204:
                        with lock:
                            done[0] += n
                    else:
                        with lock:
                            failed[0] += 1

        cpu0, redis0 = cpu_seconds([proc.pid]), redis_cpu()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = done[0] / (time.perf_counter() - t0)
        cpu, rcpu = cpu_seconds([proc.pid]) - cpu0, redis_cpu() - redis0
        if failed[0]:
            print(f"  role {role}: {failed[0]} requests failed (not counted)", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # measured already; no orphan left behind
            print(f"  role {role}: server did not stop within 60 s; killed", flush=True)
            proc.kill()
            proc.wait()
        log.close()
    if role == "ingest":
        asyncio.run(_drop(env["PERFINTEL_BUS__STREAM_PREFIX"]))
    return rate, cpu, rcpu


async def _drop(prefix: str) -> None:
    bus = RedisBus(REDIS, prefix, 16)
    await bus.delete_all()
    await bus.close()


# -- 2b. publish encoding ----------------------------------------------------------------


def encode_costs(repeats: int = 7) -> dict[str, float]:
    """Median CPU ms per 5,000-series remote-write request (warm caches, as an ingest
    process sees the same series every interval): decoding it, and splitting + encoding it
    for 16 shards the way ``BusPublisher.prepare`` did (``split_by_shard`` with a
    ``ShardCache``, ``encode_batch`` per part) and does (``ShardEncoder``)."""
    from perfintel.bus.codec import encode_batch
    from perfintel.bus.encode import ShardEncoder
    from perfintel.bus.sharding import ShardCache, split_by_shard
    from perfintel.ingest.remote_write import decode_remote_write

    bodies = [encode_remote_write(b, compress=False) for b in batches(5000, 8, 5000, seed=9)]
    parsed = [decode_remote_write(b).batch for b in bodies]
    cache, enc = ShardCache(16), ShardEncoder(16)

    def before(b: SampleBatch) -> dict[int, bytes]:
        return {k: encode_batch(v) for k, v in split_by_shard(b, 16, cache).items()}

    for b in parsed:  # warm both caches; the same bytes
        assert before(b) == enc.encode(b)
    steps = {
        "decode": lambda: [decode_remote_write(b) for b in bodies],
        "split+encode before": lambda: [before(b) for b in parsed],
        "ShardEncoder": lambda: [enc.encode(b) for b in parsed],
    }
    out: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):  # alternating: a load change hits each alike
        for k, f in steps.items():
            c = time.process_time()
            f()
            out[k].append(1000 * (time.process_time() - c) / len(bodies))
    return {k: statistics.median(v) for k, v in out.items()}


# -- 3. memory -------------------------------------------------------------------------


def memory_per_series(n: int, samples: int, compact: bool) -> tuple[float, int]:
    """RSS growth per series of one detector scoring ``n`` new series (inputs built first);
    and its state bytes per series in memory."""
    # a worker's detector: series by key, no label sets kept, its allocator settings
    limit_allocator_slack()
    det = OnlineAnomalyDetection(Discard(), max_series=n + 1, compact=compact, keep_labels=False)
    for b in batches(1000, 2, 1000, seed=5):
        det.process(b)  # compile, allocate the first rows
    data = batches(n, samples, 5000, seed=6)
    data = [
        SampleBatch(
            [label_set({**dict(s), "run": "m"}) for s in b.series],
            b.series_idx,
            b.timestamps,
            b.values,
        )
        for b in data
    ]
    proc = psutil.Process()
    before = proc.memory_info().rss
    for b in data:
        det.process(b)
    grown = proc.memory_info().rss - before
    return grown / n, det.runner.state_nbytes()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--per-batch", type=int, default=2_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ingest-seconds", type=float, default=15.0)
    ap.add_argument("--mem-series", type=int, default=100_000)
    ap.add_argument("--mem-samples", type=int, default=2)
    ap.add_argument("--checkpoint-interval", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    ap.add_argument("--live", action="store_true", help="publish while the workers run")
    ap.add_argument("--full-checkpoints", action="store_true")
    ap.add_argument("--compact", action="store_true", help="workers keep compact states")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["scoring", "encode", "ingest", "memory"]
    )
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}  load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "scoring" not in args.skip:
            data = batches(args.series, args.steps, args.per_batch)
            n = sum(len(b) for b in data)
            rates: dict[int, list[float]] = {w: [] for w in args.workers}
            for r in range(args.rounds):
                # alternate the order per round: a load change hits every count alike
                order = args.workers if r % 2 == 0 else args.workers[::-1]
                for w in order:
                    elapsed, stats, usage = scoring(
                        w,
                        data,
                        args.shards,
                        tmp,
                        args.checkpoint_interval,
                        live=args.live,
                        incremental=not args.full_checkpoints,
                        compact=args.compact,
                    )
                    rates[w].append(n / elapsed)
                    cp = ", ".join(
                        f"{s['worker']}: {s['scored']:,} scored, checkpoints {s['cp_s']:.2f} s "
                        f"{s['cp_bytes'] / 1e6:.1f} MB"
                        for s in stats
                    )
                    wc, rc = usage["workers_cpu"], usage["redis_cpu"]
                    print(
                        f"round {r + 1}, scoring, {w} worker(s): {n} samples in {elapsed:.2f} s"
                        f" = {n / elapsed:,.0f} samples/s; CPU: workers {wc:.2f} s "
                        f"({wc / elapsed:.2f} cores, {1e6 * wc / n:.1f} s per M samples), "
                        f"Redis {rc:.2f} s ({rc / elapsed:.2f} cores, "
                        f"{100 * rc / max(wc + rc, 1e-9):.0f} % of workers + Redis)  [{cp}]  "
                        f"load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                if 1 in rates:
                    print(
                        f"round {r + 1}, ratios: "
                        + ", ".join(
                            f"{w} workers / 1: {rates[w][-1] / rates[1][-1]:.2f}x" for w in rates
                        ),
                        flush=True,
                    )
            for w in rates:
                print(
                    f"scoring, {w} worker(s): median {statistics.median(rates[w]):,.0f} samples/s"
                )
            if 1 in rates:
                for w in rates:
                    per_round = [a / b for a, b in zip(rates[w], rates[1], strict=True)]
                    print(
                        f"scoring ratio {w} workers / 1 worker: median of rounds "
                        f"{statistics.median(per_round):.2f}x "
                        f"({', '.join(f'{x:.2f}' for x in per_round)})"
                    )
        if "encode" not in args.skip:
            costs = encode_costs()
            print(
                "publish encoding, median CPU ms per 5,000-series request: "
                + ", ".join(f"{k} {v:.2f}" for k, v in costs.items())
                + f"  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        if "ingest" not in args.skip:
            payloads = [(encode_remote_write(b), len(b)) for b in batches(5000, 8, 5000, seed=9)]
            ratios: list[float] = []
            got: dict[str, list[float]] = {"all": [], "ingest": []}
            for r in range(args.rounds):
                order = ("all", "ingest") if r % 2 == 0 else ("ingest", "all")
                res = {
                    role: ingest_rate(role, payloads, args.ingest_seconds, tmp) for role in order
                }
                for role in order:
                    rate, cpu, rcpu = res[role]
                    got[role].append(rate)
                    print(
                        f"round {r + 1}, ingest, role {role}: {rate:,.0f} samples/s; CPU: server "
                        f"{1e6 * cpu / (rate * args.ingest_seconds):.2f} s per M samples, "
                        f"Redis {rcpu / args.ingest_seconds:.2f} cores  "
                        f"load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                ratios.append(res["ingest"][0] / res["all"][0])
                print(f"round {r + 1}, ingest / all: {100 * ratios[-1]:.0f} %", flush=True)
            print(
                f"ingest, role all (one process: store + in-process detector): median "
                f"{statistics.median(got['all']):,.0f} samples/s; role ingest (store + bus "
                f"publish): median {statistics.median(got['ingest']):,.0f} samples/s; ratio "
                f"per round {', '.join(f'{100 * x:.0f} %' for x in ratios)}, median "
                f"**{100 * statistics.median(ratios):.0f} %**  load {os.getloadavg()[0]:.2f}"
            )
    if "memory" not in args.skip:
        for compact in (False, True):  # each in a fresh process: freed memory is not reused
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory",
                    str(args.mem_series),
                    str(args.mem_samples),
                    "1" if compact else "0",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            per, state = json.loads(out.strip().splitlines()[-1])
            print(
                f"worker memory, {'compact' if compact else 'exact'} state: {per:,.0f} B per "
                f"series (RSS growth over {args.mem_series} series, {args.mem_samples} samples "
                f"each); detector state {state} B per series"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        a = sys.argv
        worker_main(a[2], int(a[3]), a[4], a[5], float(a[6]), a[7], a[8])
    elif len(sys.argv) > 1 and sys.argv[1] == "--memory":
        a = sys.argv
        print(json.dumps(memory_per_series(int(a[2]), int(a[3]), a[4] == "1")))
    else:
        main()
