"""Speed of capacity planning: ``plan_capacity`` alone, and the capacity API as the dashboard calls it.

1. ``plan_capacity`` on one 7-day history of 5-minute memory usage (2,016
   points, a daily cycle, slow growth, noise) with the API's two scenarios
   (baseline, +30 % traffic), at horizons of 1, 7, 30 and 365 days (288 to
   105,120 projected steps of 400 paths);
2. ``POST /api/v1/performance/capacity/analyze`` through the in-process ASGI
   app (``create_app`` over a real DuckDB data directory in a temporary folder,
   no collectors) for ``--hosts`` hosts' memory, with the dashboard's request
   body (``perfintel/web/static/js/pages/capacity.js``): MemAvailable against
   MemTotal, ``usage_kind=available``, 30 days ahead from 7 days of the 5-minute
   tier.

Prints the median (and min) wall time of ``--repeats`` runs per case, after
one warm-up. Never a pass/fail.

    .venv/bin/python benchmarks/capacity_speed.py [--repeats 5] [--hosts 30] [--skip-api]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.analysis.capacity import plan_capacity  # noqa: E402
from perfintel.api.app import create_app  # noqa: E402
from perfintel.batch import SampleBatch  # noqa: E402
from perfintel.config import load_settings  # noqa: E402
from perfintel.model import label_set  # noqa: E402
from perfintel.performance.capacity import TRAFFIC_SCENARIOS  # noqa: E402

MIN_MS = 60_000
DAY_MS = 1440 * MIN_MS
STEP_MS = 5 * MIN_MS
GIB = 2.0**30
#: the Capacity page's memory request (capacity.js), ``end`` added for a fixed window
DASHBOARD_BODY = {
    "usage": "node_memory_MemAvailable_bytes",
    "capacity": "node_memory_MemTotal_bytes",
    "usage_kind": "available",
    "horizon_days": 30,
    "step": "5m",
    "history": "7d",
}


def memory_used(ts_ms: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Used memory (bytes) with a daily cycle, slow growth and noise; and the total."""
    rng = np.random.default_rng(seed)
    total = float(rng.choice([8, 16, 32, 64])) * GIB
    days = (ts_ms - ts_ms[-1]) / DAY_MS
    base = rng.uniform(0.3, 0.6) * total
    growth = rng.uniform(0.0, 0.02) * total  # per day
    cycle = rng.uniform(0.02, 0.1) * total * np.sin(2 * np.pi * (days + rng.uniform()))
    used = base + growth * days + cycle + rng.normal(0, 0.005 * total, ts_ms.size)
    return np.clip(used, 0.01 * total, 0.99 * total), total


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def show(name: str, times: list[float]) -> None:
    print(f"{name:52s} {1000 * statistics.median(times):10.1f} {1000 * min(times):9.1f}")


def bench_plan(repeats: int) -> None:
    end = 1_700_000_000_000
    ts = np.arange(end - 7 * DAY_MS, end, STEP_MS)
    used, total = memory_used(ts, 0)
    for days in (1, 7, 30, 365):

        def call(d: float = days) -> None:
            plan_capacity(
                ts / 1000.0,
                used,
                total,
                horizon_days=d,
                scenarios=TRAFFIC_SCENARIOS,
                step_seconds=STEP_MS / 1000,
            )

        show(f"plan_capacity 7d of 5m, horizon {days}d", timed(call, repeats))


def bench_api(repeats: int, hosts: int) -> None:
    end = (int(time.time() * 1000) // (60 * MIN_MS)) * 60 * MIN_MS
    ts = np.arange(end - 7 * DAY_MS, end, STEP_MS)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(overrides={"data_dir": Path(tmp) / "data"}, env={})
        with TestClient(create_app(settings, collectors=False)) as client:
            store = client.app.state.store  # type: ignore[attr-defined]
            for i in range(hosts):
                used, total = memory_used(ts, 100 + i)
                labels = {"instance": f"host{i:02d}:9100", "job": "node"}
                avail = label_set({"__name__": "node_memory_MemAvailable_bytes", **labels})
                size = label_set({"__name__": "node_memory_MemTotal_bytes", **labels})
                store.append(SampleBatch.from_arrays(avail, ts, total - used))
                store.append(SampleBatch.from_arrays(size, ts, np.full(ts.size, total)))
            store.flush(compact=True)
            body = {**DASHBOARD_BODY, "end": end / 1000}

            def call() -> None:
                r = client.post("/api/v1/performance/capacity/analyze", json=body)
                r.raise_for_status()
                n = len(r.json()["data"]["resources"])
                if n != hosts:
                    raise SystemExit(f"expected {hosts} resources, got {n}")

            show(f"capacity API, {hosts} hosts' memory (dashboard body)", timed(call, repeats))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hosts", type=int, default=30)
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--skip-plan", action="store_true")
    a = ap.parse_args()
    print(f"{'case':52s} {'median ms':>10s} {'min ms':>9s}   (n={a.repeats})")
    if not a.skip_plan:
        bench_plan(a.repeats)
    if not a.skip_api:
        bench_api(a.repeats, a.hosts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
