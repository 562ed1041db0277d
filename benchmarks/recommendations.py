"""Latency of optimisation recommendations for 200 hosts over 14 days, from the rollup tiers.

Loads ``--hosts`` hosts × 14 days of node-exporter-like metrics at a
15-minute interval into a real DuckDB store in a temporary folder (per host:
4 CPUs × 4 modes of ``node_cpu_seconds_total``, memory total and available,
two filesystems' size and available bytes, one process's resident memory;
a tenth of the hosts over-provisioned, a tenth CPU-bound, a few leaking or
filling a disk), flushes and compacts it so the 5-minute and 1-hour tiers
exist, then times, warm, median of ``--repeats``:

* ``recommend()`` in-process (reading the hourly buckets, building the
  resources, running every registered rule);
* the HTTP API end to end (``POST /api/v1/performance/optimize/recommendations``
  through the in-process ASGI app over the same store: validation, worker
  thread, JSON rendering).

    .venv/bin/python benchmarks/recommendations.py [--hosts 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from perfintel.analysis.recommend import CostModel
from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, label_set
from perfintel.performance.recommendations import recommend
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

HOUR = 3_600_000
DAY = 24 * HOUR
STEP = 15 * 60_000
GIB = 1024**3
PATH = "/api/v1/performance/optimize/recommendations"


def load(store: DuckDBStore, hosts: int, end: int) -> int:
    rng = np.random.default_rng(0)
    ts = np.arange(end - 14 * DAY, end, STEP, dtype=np.int64)
    n = ts.size
    hours = (ts % DAY) / HOUR
    load_curve = 0.3 + 0.7 * np.exp(-0.5 * ((hours - 14) / 3.5) ** 2)
    total = 0
    for h in range(hosts):
        inst = f"host-{h:03d}:9100"
        base = {"instance": inst, "job": "node"}
        kind = ("over", "under", "leak", "disk")[h % 10] if h % 10 < 4 else "ok"
        busy = {"over": 0.04, "under": 0.97}.get(kind, 0.55) * load_curve
        labels: list[LabelSet] = []
        rows: list[np.ndarray] = []
        for cpu in range(4):
            u = np.clip(busy * (1 + 0.05 * rng.standard_normal(n)), 0.001, 0.999)
            for mode, frac in (
                ("idle", 1 - u),
                ("user", 0.7 * u),
                ("system", 0.25 * u),
                ("iowait", 0.05 * u),
            ):
                labels.append(
                    label_set(
                        {
                            "__name__": "node_cpu_seconds_total",
                            **base,
                            "cpu": str(cpu),
                            "mode": mode,
                        }
                    )
                )
                rows.append(1e6 + np.cumsum(frac * STEP / 1000))
        mem_total = 16 * GIB
        used = (0.55 if kind != "over" else 0.1) * mem_total * (0.9 + 0.1 * load_curve)
        if kind == "leak":
            used = used + np.linspace(0, 3 * GIB, n)
        labels += [
            label_set({"__name__": "node_memory_MemTotal_bytes", **base}),
            label_set({"__name__": "node_memory_MemAvailable_bytes", **base}),
        ]
        rows += [np.full(n, float(mem_total)), mem_total - used]
        for mount, size, fill in (("/", 100 * GIB, 0.3), ("/data", 1000 * GIB, 0.5)):
            grow = np.linspace(0, 400 * GIB, n) if kind == "disk" and mount == "/data" else 0.0
            fs = {
                **base,
                "device": "vda" if mount == "/" else "vdb",
                "fstype": "ext4",
                "mountpoint": mount,
            }
            labels += [
                label_set({"__name__": "node_filesystem_size_bytes", **fs}),
                label_set({"__name__": "node_filesystem_avail_bytes", **fs}),
            ]
            rows += [np.full(n, float(size)), size * (1 - fill) - grow + 0 * ts]
        labels.append(
            label_set(
                {
                    "__name__": "process_resident_memory_bytes",
                    "instance": inst.replace("9100", "8080"),
                    "job": "app",
                }
            )
        )
        rows.append(
            0.5 * GIB * (1 + 0.1 * load_curve) + (np.linspace(0, GIB, n) if kind == "leak" else 0)
        )
        idx = np.repeat(np.arange(len(labels), dtype=np.int32), n)
        batch = SampleBatch(labels, idx, np.tile(ts, len(labels)), np.concatenate(rows))
        store.append(batch)
        total += len(batch)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    end = (int(time.time() * 1000) // HOUR) * HOUR
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "samples", StoreOptions(wal_fsync=False))
        t0 = time.perf_counter()
        samples = load(store, args.hosts, end)
        store.flush(compact=True)
        print(
            f"loaded {samples:,} samples of {args.hosts} hosts in {time.perf_counter() - t0:.0f} s; tiers: {store.stats().tiers}"
        )
        cost = CostModel()
        rep = recommend(store, end, 14, cost)  # warm
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rep = recommend(store, end, 14, cost)
            times.append(time.perf_counter() - t0)
        kinds: dict[str, int] = {}
        for r in rep.recommendations:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        print(
            f"recommend(): {rep.resources} resources, {len(rep.recommendations)} recommendations "
            f"{kinds}; median {statistics.median(times):.2f} s, max {max(times):.2f} s "
            f"({args.repeats} runs)"
        )
        from fastapi.testclient import TestClient

        from perfintel.api.app import create_app
        from perfintel.config import load_settings

        settings = load_settings(overrides={"data_dir": Path(tmp) / "app"}, env={})
        with TestClient(create_app(settings, store=store, collectors=False)) as client:
            body = {"window": "14d", "end": end / 1000}
            client.post(PATH, json=body).raise_for_status()
            api = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                client.post(PATH, json=body).raise_for_status()
                api.append(time.perf_counter() - t0)
        print(f"HTTP API end to end: median {statistics.median(api):.2f} s, max {max(api):.2f} s")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
