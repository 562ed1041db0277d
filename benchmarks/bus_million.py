"""Many active series through the bus into VictoriaMetrics: 2 workers, peak memory, nothing lost.

``--series`` series (default 1,000,000) send one sample every simulated minute for
``--minutes`` minutes (compressed: a round is published as soon as the workers have read
the previous one). The benchmark starts its own VictoriaMetrics (Debian's binary, a fresh
data directory, like the tests' ``victoria_metrics`` fixture) and uses Redis at
127.0.0.1:6379 (a fresh stream prefix) and, for leases and checkpoints, PostgreSQL at
127.0.0.1:5432 (database ``test``, a fresh schema, dropped afterwards; as a deployment
does) or with ``--db sqlite`` a SQLite file.

* this process plays the ingest role: it writes every sample to VictoriaMetrics
  (remote_write, ``RemoteStore``) and publishes it to the bus (16 shards);
* ``--workers`` worker processes (``ShardWorker``, checkpoint every 10 s, compact detector
  state unless ``--exact``; series by key, no label sets kept, as ``--role worker`` runs)
  score their shards and write ``anomaly_score``, ``yhat``, ``yhat_lower`` and
  ``yhat_upper`` to VictoriaMetrics directly.

Reported: wall time, per-process peak memory (``VmHWM``: the workers, this process,
VictoriaMetrics; Redis' ``used_memory_peak``), worker bytes per series (peak and final RSS
above the worker's RSS before its first series, divided by the series it holds; and the
detector state per series), and the counts that say nothing was lost: samples published =
samples scored by the workers = samples and ``anomaly_score`` samples found in
VictoriaMetrics.

    python benchmarks/bus_million.py                       # 1,000,000 series x 10 minutes
    python benchmarks/bus_million.py --series 200000       # what fits a busy 2-core machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.alerting.state.database import open_database  # noqa: E402
from perfintel.alerting.state.leases import LeaseManager  # noqa: E402
from perfintel.batch import SampleBatch  # noqa: E402
from perfintel.bench.harness import victoria_metrics  # noqa: E402
from perfintel.bus.checkpoint import CheckpointStore  # noqa: E402
from perfintel.bus.publish import BusPublisher  # noqa: E402
from perfintel.bus.redis_streams import RedisBus  # noqa: E402
from perfintel.bus.worker import ShardWorker  # noqa: E402
from perfintel.model import label_set  # noqa: E402
from perfintel.performance.online import OnlineAnomalyDetection  # noqa: E402
from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"
VM_BINARY = os.environ.get("PERFINTEL_VM_BINARY", "/usr/bin/victoria-metrics")
SHARDS = 16
GROUP = "million"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def heap_mib() -> dict[str, float]:
    """glibc's ``mallinfo2`` (every arena): heap bytes from the system, in use, free;
    mapped blocks. Where a worker's memory beyond its arrays sits."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [
            (f, ctypes.c_size_t)
            for f in [
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            ]
        ]

    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = Info
    m = fn()
    return {
        "heap": m.arena / 2**20,
        "heap_used": m.uordblks / 2**20,
        "heap_free": m.fordblks / 2**20,
        "mapped": m.hblkhd / 2**20,
        "py_blocks": float(sys.getallocatedblocks()),
    }


def status_kib(pid: int | str, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (``VmHWM``: peak RSS, ``VmRSS``: now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# -- worker process ----------------------------------------------------------------------


def worker_main(prefix: str, db: str, vm_url: str, name: str, compact: bool) -> None:
    async def run() -> dict[str, float]:
        bus = RedisBus(REDIS, prefix, SHARDS)
        engine = open_database(db)
        store = RemoteStore(RemoteStoreOptions.single_node(vm_url))
        dets: list[OnlineAnomalyDetection] = []

        def make() -> OnlineAnomalyDetection:
            dets.append(
                OnlineAnomalyDetection(store, max_series=10**7, compact=compact, keep_labels=False)
            )
            return dets[-1]

        w = ShardWorker(
            bus,
            LeaseManager(engine, name, ttl=15.0),
            CheckpointStore(engine),
            make,
            group=GROUP,
            consumer=name,
            checkpoint_interval_s=10.0,
            read_count=16,
            block_ms=100,
        )
        # the kernels compile before the first series arrives: base RSS without series
        warm = OnlineAnomalyDetection(store, compact=compact)
        warm.process(
            SampleBatch(
                [label_set({"__name__": "warm"})], np.zeros(1, np.int32), np.ones(1), np.ones(1)
            )
        )
        del warm
        base = status_kib("self", "VmRSS")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(w.run())
        await stop.wait()
        held = sum(st.detector.series_count for st in w.owned.values())
        state = max((st.detector.runner.state_nbytes() for st in w.owned.values()), default=0)
        arrays = sum(st.detector.memory_nbytes() for st in w.owned.values())
        rss = status_kib("self", "VmRSS")
        heap = heap_mib()
        import ctypes
        import gc

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = status_kib("self", "VmRSS")
        w.stop()
        await task
        store.close()
        await bus.close()
        engine.dispose()
        return {
            "worker": name,  # type: ignore[dict-item]
            "scored": w.samples_scored,
            "series": held,
            "state_bytes": state,
            "arrays_bytes": arrays,
            "base_kib": base,
            "rss_kib": rss,
            "trimmed_kib": trimmed,
            "heap_mib": heap,  # type: ignore[dict-item]
            "hwm_kib": status_kib("self", "VmHWM"),
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "checkpoint_s": w.checkpoint_seconds,
            "checkpoint_mb": w.checkpoint_bytes / 1e6,
        }

    print(json.dumps(asyncio.run(run())), flush=True)


# -- the benchmark -------------------------------------------------------------------------


def query(vm_url: str, expr: str, at_s: float) -> float:
    r = httpx.get(f"{vm_url}/api/v1/query", params={"query": expr, "time": str(at_s)}, timeout=600)
    if r.status_code != 200:
        print(f"query {expr!r}: HTTP {r.status_code} {r.text[:300]}", flush=True)
        return float("nan")
    res = r.json()["data"]["result"]
    return float(res[0]["value"][1]) if res else 0.0


def holders(db: str) -> dict[str, str]:
    """Live shard leases (not members): lease name -> holder."""
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    prefix = f"bus:{GROUP}:"
    live = LeaseManager(engine, "bench", 1.0).live(prefix)
    engine.dispose()
    return {n: lease.holder for n, lease in live.items() if n[len(prefix) :].isdigit()}


async def drive(
    n_series: int,
    minutes: int,
    per_batch: int,
    prefix: str,
    vm_url: str,
    db: str,
    workers: int,
    pids: list[int],
) -> dict[str, float]:
    bus = RedisBus(REDIS, prefix, SHARDS)
    pub = BusPublisher(bus, group=GROUP, max_behind=10**9)
    store = RemoteStore(RemoteStoreOptions.single_node(vm_url))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # every worker has its even share
        h = holders(db)
        per = [list(h.values()).count(f"w{i}") for i in range(workers)]
        if len(h) == SHARDS and max(per) <= -(-SHARDS // workers):
            break
        await asyncio.sleep(0.5)
    else:
        raise RuntimeError("the workers did not split the shards within 180 s")
    series = [
        label_set({"__name__": "bench_requests", "instance": f"host-{i // 100}", "pod": f"p{i}"})
        for i in range(n_series)
    ]
    rng = np.random.default_rng(1)
    t0 = (int(time.time()) // 60 - minutes - 5) * 60_000
    published = 0
    entries_per_round = 0
    started = time.perf_counter()
    store_s = 0.0
    for k in range(minutes):
        phase = np.arange(n_series) / 97.0
        vals = 100 + 10 * np.sin(phase + k / 5) + rng.normal(0, 2, n_series)
        before = await bus.backlog(GROUP)
        for lo in range(0, n_series, per_batch):
            hi = min(n_series, lo + per_batch)
            b = SampleBatch(
                series[lo:hi],
                np.arange(hi - lo, dtype=np.int32),
                np.full(hi - lo, t0 + k * 60_000, np.int64),
                vals[lo:hi],
            )
            s0 = time.perf_counter()
            store.append(b)  # the ingest role stores, then publishes
            store_s += time.perf_counter() - s0
            await pub.send(pub.prepare(b))
            published += len(b)
        after = await bus.backlog(GROUP)
        entries_per_round = sum(a.lag for a in after) - sum(b.lag for b in before)
        # pace: the next minute once the workers have read all but this round
        while sum(x.lag for x in await bus.backlog(GROUP)) > entries_per_round:
            await asyncio.sleep(0.2)
        await bus.trim()
        mem = ", ".join(
            f"w{i} RSS {status_kib(p, 'VmRSS') / 1024:,.0f} MiB (peak "
            f"{status_kib(p, 'VmHWM') / 1024:,.0f})"
            for i, p in enumerate(pids)
        )
        print(
            f"  minute {k + 1}/{minutes} published, {time.perf_counter() - started:.0f} s, "
            f"load {os.getloadavg()[0]:.1f}; {mem}",
            flush=True,
        )
    while sum(x.lag for x in await bus.backlog(GROUP)):
        await asyncio.sleep(0.2)
    drained = time.perf_counter() - started
    # everything read; acknowledged once checkpointed (within the 10 s interval)
    while sum(x.pending for x in await bus.backlog(GROUP)):
        await asyncio.sleep(0.5)
    trimmed = await bus.trim()
    store.close()
    info = redis.Redis.from_url(REDIS).info("memory")
    await bus.delete_all()
    await bus.close()
    return {
        "published": published,
        "drained_s": drained,
        "store_s": store_s,
        "t_end_s": (t0 + minutes * 60_000) / 1000,
        "redis_peak_mb": info["used_memory_peak"] / 2**20,
        "trimmed": trimmed,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-batch", type=int, default=10_000)
    ap.add_argument("--exact", action="store_true", help="exact detector state, not compact")
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}  load before: {os.getloadavg()}", flush=True)
    # SIGTERM stops the workers and VictoriaMetrics too (the ``finally`` blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prefix = f"perfintel-million-{uuid.uuid4().hex[:8]}"
        schema = prefix.replace("-", "_")
        if args.db == "sqlite":
            db = f"sqlite:///{tmp / 'state.db'}"
        else:
            _schema(schema, create=True)
            db = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        open_database(db).dispose()
        vm_proc = victoria_metrics(tmp / "vm", _free_port(), tmp / "vm.log", VM_BINARY)
        # counting over a million series at once: above VictoriaMetrics' default limit
        vm_proc.cmd.append("-search.maxUniqueTimeseries=10000000")
        with vm_proc as vm:
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        prefix,
                        db,
                        vm.base_url,
                        f"w{i}",
                        "0" if args.exact else "1",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(args.workers)
            ]
            stats: list[dict[str, float]] = []
            try:
                res = asyncio.run(
                    drive(
                        args.series,
                        args.minutes,
                        args.per_batch,
                        prefix,
                        vm.base_url,
                        db,
                        args.workers,
                        [p.pid for p in procs],
                    )
                )
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    out, _ = p.communicate(timeout=600)
                    stats.extend(json.loads(x) for x in out.splitlines() if x.startswith("{"))
            for st in stats:
                print(json.dumps(st), flush=True)  # raw, in case counting fails
            httpx.get(f"{vm.base_url}/internal/force_flush", timeout=60)
            time.sleep(2)
            window = f"[{args.minutes + 5}m]"
            at = res["t_end_s"]
            in_vm = query(vm.base_url, f"sum(count_over_time(bench_requests{window}))", at)
            scores = query(vm.base_url, f"sum(count_over_time(anomaly_score{window}))", at)
            score_series = query(vm.base_url, f"count(last_over_time(anomaly_score{window}))", at)
            vm_hwm = status_kib(vm.pid, "VmHWM")
        if args.db != "sqlite":
            _schema(schema, create=False)
    n, minutes = args.series, args.minutes
    print(
        f"{n:,} series x {minutes} minutes = {res['published']:,.0f} samples published in "
        f"{res['drained_s']:.0f} s ({res['published'] / res['drained_s']:,.0f} samples/s; "
        f"of which {res['store_s']:.0f} s writing the samples to VictoriaMetrics), "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for s in stats:
        held = max(1, s["series"])
        print(
            f"worker {s['worker']}: {s['series']:,} series, {s['scored']:,} samples scored; "
            f"peak RSS (VmHWM) {s['hwm_kib'] / 1024:,.0f} MiB, RSS at the end "
            f"{s['rss_kib'] / 1024:,.0f} MiB, before any series {s['base_kib'] / 1024:,.0f} MiB "
            f"-> {(s['rss_kib'] - s['base_kib']) * 1024 / held:,.0f} B per series at the end, "
            f"{(s['hwm_kib'] - s['base_kib']) * 1024 / held:,.0f} B per series at the peak, "
            f"{(s['trimmed_kib'] - s['base_kib']) * 1024 / held:,.0f} B after gc + malloc_trim; "
            f"detector state {s['state_bytes']} B per series, its numpy arrays (capacity "
            f"included) {s['arrays_bytes'] / held:,.0f} B per series; checkpoints "
            f"{s['checkpoint_s']:.1f} s, {s['checkpoint_mb']:,.0f} MB ({args.db})"
        )
    print(
        f"this process (ingest role, {n:,} label sets): peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; "
        f"VictoriaMetrics peak RSS {vm_hwm / 1024:,.0f} MiB; Redis used_memory_peak "
        f"{res['redis_peak_mb']:,.0f} MiB"
    )
    scored = sum(s["scored"] for s in stats)
    print(
        f"lost: samples published {res['published']:,.0f}, scored {scored:,}, in "
        f"VictoriaMetrics {in_vm:,.0f}; anomaly_score samples {scores:,.0f} over "
        f"{score_series:,.0f} series -> "
        + (
            "nothing lost"
            if res["published"] == scored == in_vm == scores and score_series == n
            else "MISMATCH"
        )
    )


def _schema(name: str, create: bool) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        verb = "CREATE SCHEMA" if create else "DROP SCHEMA IF EXISTS"
        conn.execute(sa.text(f'{verb} "{name}"' + ("" if create else " CASCADE")))
    admin.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        a = sys.argv
        worker_main(a[2], a[3], a[4], a[5], a[6] == "1")
    else:
        main()
