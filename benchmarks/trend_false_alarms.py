"""False-alarm rate of ``kind: trend_degradation``'s test when nothing changed.

AR(1) noise (phi 0, 0.5, 0.9) around a constant level, 1-minute steps; the
recent hour is tested against the 24 hours before it (the kind's defaults:
``window: 1h``, ``baseline: 1d``). The rule documents the rate as at most
``significance`` per evaluation; this prints the measured rate for
``significance`` 0.01 and 0.001.

Run: ``.venv/bin/python benchmarks/trend_false_alarms.py [--runs 4000]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from perfintel.alerting.rules.kinds.trend import trend_test, window_summary


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(0, 1, n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=4000)
    args = ap.parse_args()
    rng = np.random.default_rng(11)
    w, k = 60, 24
    t = np.arange(w, dtype=float) * 60
    print("phi  significance  alarms/runs  rate")
    for phi in (0.0, 0.5, 0.9):
        ps = []
        for _ in range(args.runs):
            y = 100 + ar1(rng, w * (k + 1), phi)
            base = [window_summary(t, y[i * w : (i + 1) * w]) for i in range(k)]
            res = trend_test(window_summary(t, y[k * w :]), base, w * 60.0, increase=True)
            assert res is not None
            ps.append(res.p)
        p = np.array(ps)
        for alpha in (0.01, 0.001):
            n = int((p < alpha).sum())
            print(f"{phi:<4} {alpha:<13} {n:>5}/{args.runs:<6} {n / args.runs:.4f}")


if __name__ == "__main__":
    main()
