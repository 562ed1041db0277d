"""Latency of scoring one series along time with the compiled detector.

    .venv/bin/python benchmarks/anomaly_latency.py [--points 1440] [--repeats 30]

Scores ``--points`` one-minute samples of one series (24 h by default, what the
detect API answers) with the default ensemble, ``--repeats`` warm times, and
prints the median (and 10th/90th percentiles) of:

* ``batch fresh`` — ``AnomalyDetector().run_batch_full(ts, values)`` from an
  empty state;
* ``batch restored`` — ``Detector.from_state(blob)`` of a detector that has
  seen the previous 7 days, then the same call (a service that keeps state
  between requests);
* ``update per sample`` — ``AnomalyDetector().update`` once per sample (the
  same code, one call each: the per-call overhead).

numba's compile is excluded from the warm figures and reported separately,
measured in child processes: with an empty on-disk cache (``NUMBA_CACHE_DIR``
set to a new temporary dir: a true compile, then written to the cache) and
again with that cache filled (what every later process pays). No assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from perfintel.analysis.anomaly import AnomalyDetector, Detector

MIN = 60_000
_CHILD = (
    "import time; t = time.perf_counter(); "
    "from perfintel.analysis.anomaly import kernel; kernel.warm_up(); "
    "print(time.perf_counter() - t)"
)


def series(points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.arange(points, dtype=np.int64) * MIN
    minute = np.arange(points)
    v = 40 + 15 * np.sin(2 * np.pi * minute / 1440) + rng.normal(0, 2, points)
    v[points // 2] += 60  # a spike
    return ts, v


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1e3)
    return out


def line(label: str, ms: list[float]) -> str:
    q = np.percentile(ms, [10, 90])
    return (
        f"{label:<20} median {statistics.median(ms):9.3f} ms   "
        f"p10 {q[0]:9.3f}   p90 {q[1]:9.3f}   ({len(ms)} runs)"
    )


def compile_seconds(cache_dir: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    res = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--skip-compile", action="store_true", help="skip the child-process timings")
    args = ap.parse_args()
    from perfintel.analysis.anomaly import kernel

    if not args.skip_compile:
        with tempfile.TemporaryDirectory() as tmp:
            cold = compile_seconds(tmp)
            cached = compile_seconds(tmp)
        print(f"numba first call, empty cache (compile):   {cold:7.2f} s")
        print(f"numba first call, cache filled (load):     {cached:7.2f} s  (incl. import numba)")
    started = time.perf_counter()
    kernel.warm_up()
    print(f"numba first call in this process:          {time.perf_counter() - started:7.2f} s")

    ts, v = series(args.points)
    hist_t, hist_v = series(7 * 1440, seed=1)
    hist_t = hist_t - hist_t[-1] + ts[0] - MIN
    warm = AnomalyDetector()
    warm.run_batch_full(hist_t, hist_v)
    blob = warm.get_state()
    print(f"{args.points} one-minute points, one series")
    timed(lambda: AnomalyDetector().run_batch_full(ts, v), 2)
    print(line("batch fresh", timed(lambda: AnomalyDetector().run_batch_full(ts, v), args.repeats)))
    restored = timed(lambda: Detector.from_state(blob).run_batch_full(ts, v), args.repeats)
    print(line("batch restored", restored))

    def per_sample() -> None:
        det = AnomalyDetector()
        for t, x in zip(ts.tolist(), v.tolist(), strict=True):
            det.update(t, x)

    print(line("update per sample", timed(per_sample, max(3, args.repeats // 10))))


if __name__ == "__main__":
    main()
