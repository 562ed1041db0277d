"""Latency of one forecast: 240 steps with 80/95 % intervals from 7 days of 1-minute data.

The series (10,080 points) has a daily cycle, a slow trend, noise and a few
gaps; seasons come from the sampling step (``season_lengths_for(60, n)`` =
[1440]) or, with ``--detect``, from the data. Prints the median and the 90th
percentile over ``--repeats`` warm runs (after ``--warmup`` runs), per series,
and the median process CPU time (the wall time grows when other work shares
the cores).

    .venv/bin/python benchmarks/forecast_latency.py [--repeats 50] [--series 5] [--detect]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from perfintel.analysis.forecast import fit_predict, season_lengths_for

N = 7 * 24 * 60
H = 240


def make_series(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N, dtype=np.float64)
    y = (
        40
        + 0.0005 * t
        + rng.uniform(5, 15) * np.sin(2 * np.pi * (t - rng.uniform(0, 1440)) / 1440)
        + rng.normal(0, rng.uniform(0.5, 3), N)
    )
    for start in rng.integers(0, N - 30, size=3):
        y[start : start + 20] = np.nan
    return y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--series", type=int, default=5, help="distinct synthetic series")
    ap.add_argument("--detect", action="store_true", help="detect seasons from the data")
    a = ap.parse_args()
    seasons = None if a.detect else season_lengths_for(60, N)
    data = [make_series(s) for s in range(a.series)]
    for y in data:
        for _ in range(a.warmup):
            fit_predict(y, H, season_lengths=seasons)
    times = []
    cpu = []
    model = ""
    for i in range(a.repeats):
        y = data[i % len(data)]
        t0, c0 = time.perf_counter(), time.process_time()
        r = fit_predict(y, H, season_lengths=seasons)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        model = r.model
    ms = 1e3 * np.asarray(times)
    print(
        f"{N} points -> {H} steps, seasons {seasons if seasons is not None else 'detected'}: "
        f"median {np.median(ms):.1f} ms wall (p90 {np.percentile(ms, 90):.1f} ms), "
        f"median {1e3 * np.median(cpu):.1f} ms CPU, over {a.repeats} warm runs "
        f"(last model: {model})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
