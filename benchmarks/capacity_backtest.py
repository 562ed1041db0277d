"""Backtest of capacity planning on synthetic resources with known exhaustion dates.

Five kinds of hourly usage (60 days of history, capacity 100): linear growth,
growth with a daily cycle, step growth (part of the growth in random jumps,
every 0.5–2 days on average), linear growth after a one-time level shift in the
second half of the history, and a weekly or daily sawtooth (clean-ups) whose
troughs grow. Each resource is simulated past the
history; its true exhaustion time is the first simulated future hour at or
above the capacity. The planner sees only the history and projects 30 days.

Prints, per kind and overall: the fraction whose true exhaustion time lies in
the planner's 80 % interval (P10–P90; "not within the horizon" counts as an
open upper end) and the fraction whose P50 is within 15 % of the true
time-to-exhaustion.

    .venv/bin/python benchmarks/capacity_backtest.py [--seeds 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from perfintel.analysis.capacity import Scenario, plan_capacity

HOUR = 3600.0
HISTORY_H = 60 * 24
HORIZON_D = 30
CAP = 100.0
KINDS = ("linear", "seasonal", "step", "level_shift", "sawtooth")


def simulate(kind: str, seed: int) -> tuple[np.ndarray, float | None]:
    """Usage over history + horizon, and the true time-to-exhaustion in days (or None)."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    n = HISTORY_H + HORIZON_D * 24
    t = np.arange(n, dtype=np.float64)
    tte = rng.uniform(3, 27)  # days after the end of history the trend meets capacity
    hit = HISTORY_H + tte * 24
    u0 = rng.uniform(20, 50)
    noise = rng.normal(0, rng.uniform(0.5, 2.0), n)
    if kind == "linear":
        u = u0 + (CAP - u0) / hit * t + noise
    elif kind == "seasonal":
        amp = rng.uniform(3, 10)
        top = CAP - amp
        u = u0 + (top - u0) / hit * t + amp * np.sin(2 * np.pi * (t - 6) / 24) + noise
    elif kind == "step":
        mean_gap = 24 * rng.uniform(0.5, 2)
        jumps = np.zeros(n)
        k = rng.exponential(mean_gap)
        sizes = []
        while k < n:
            sizes.append(int(k))
            k += rng.exponential(mean_gap)
        share = rng.uniform(0.3, 0.7)  # of the growth that comes in steps
        rate = (CAP - u0) / hit
        for i in sizes:
            jumps[i:] += share * rate * mean_gap * rng.uniform(0.5, 1.5)
        u = u0 + (1 - share) * rate * t + jumps + noise * 0.5
    elif kind == "level_shift":
        at = int(rng.integers(HISTORY_H // 2, HISTORY_H - 48))
        jump = rng.uniform(5, 15)
        rate = (CAP - u0 - jump) / hit
        u = u0 + rate * t + np.where(t >= at, jump, 0.0) + noise
    else:
        period = int(rng.choice([24, 24 * 7]))
        fill = rng.uniform(10, 25)
        phase0 = int(rng.integers(0, period))
        pos = (t + phase0) % period
        reset = t - pos
        top0 = CAP - fill
        trough = u0 + (top0 - u0) / hit * reset
        u = trough + fill * pos / (period - 1) + noise * 0.3
    future = u[HISTORY_H:]
    above = np.flatnonzero(future >= CAP)
    true = float(above[0] + 1) / 24 if above.size else None
    return u, true


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=50, help="resources per kind")
    ap.add_argument("--first-seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for kind in KINDS:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            u, true = simulate(kind, seed)
            hist = u[:HISTORY_H]
            if np.any(hist >= CAP):
                continue
            ts = 1.7e9 + HOUR * np.arange(HISTORY_H)
            rep = plan_capacity(
                ts, hist, CAP, horizon_days=HORIZON_D, scenarios=[Scenario()], resource="disk"
            )
            b = rep.baseline
            lo = b.days_p10 if b.days_p10 is not None else np.inf
            hi = b.days_p90 if b.days_p90 is not None else np.inf
            tt = true if true is not None else np.inf
            inside = lo <= tt <= hi
            if true is None:
                close = b.days_p50 is None
            else:
                close = b.days_p50 is not None and abs(b.days_p50 - true) <= 0.15 * true
            rows.append((kind, inside, close, rep.model))
    dt = time.perf_counter() - t0
    print(f"{'kind':10s} {'n':>4s} {'in 80% interval':>16s} {'P50 within 15%':>15s}  models")
    for kind in (*KINDS, "all"):
        sel = [r for r in rows if kind in ("all", r[0])]
        models = {m: sum(1 for r in sel if r[3] == m) for m in sorted({r[3] for r in sel})}
        print(
            f"{kind:10s} {len(sel):4d} {np.mean([r[1] for r in sel]):16.3f} "
            f"{np.mean([r[2] for r in sel]):15.3f}  {models}"
        )
    print(
        f"targets: in 80% interval >= 0.75, P50 within 15% >= 0.80; {len(rows)} resources in {dt:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
