"""Throughput of the vectorised multi-series anomaly runner.

    .venv/bin/python benchmarks/anomaly_online.py [--series 10000] [--steps 60]

Each batch holds one new sample for each of ``--series`` series (a scrape
interval's worth); prints sample-updates per second for the default ensemble
and each component, and the state size per series. No assertions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from perfintel.analysis.anomaly import OnlineRunner, VectorModel
from perfintel.analysis.anomaly.kernel import stock_models


def bench(model: VectorModel, n_series: int, steps: int, warm: int = 5) -> float:
    rng = np.random.default_rng(0)
    runner = OnlineRunner(model, capacity=n_series)
    ids = np.arange(n_series, dtype=np.int64)
    base = rng.uniform(10, 100, n_series)
    t0 = 1_700_000_000_000
    elapsed = 0.0
    for s in range(warm + steps):
        ts = np.full(n_series, t0 + s * 15_000, dtype=np.int64)
        values = base + rng.normal(0, 1, n_series)
        started = time.perf_counter()
        runner.update_many(ids, ts, values)
        if s >= warm:
            elapsed += time.perf_counter() - started
    return n_series * steps / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    for m in stock_models():
        rate = bench(m, args.series, args.steps)
        print(
            f"{m.name:<11} {args.series:>6} series  {rate:>12,.0f} updates/s  "
            f"state {m.state_nbytes():>5} B/series"
        )


if __name__ == "__main__":
    main()
