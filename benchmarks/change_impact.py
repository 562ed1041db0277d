"""Change impact on generated deploys with known effects: interval coverage and false positives.

Each generated deploy is one series on a one-minute grid — three days of
history and an ``after`` window of 30, 60 or 120 minutes — of one of four
kinds: a seasonal gauge (daily cycle, AR(1) noise of random memory), a
trending gauge, a request counter (Poisson increments around a daily cycle)
and a latency-like gauge (log-normal, heavy right tail). At the change the
series moves by a known effect: none in 40 % of the deploys, else a level
shift of 0.5 to 6 noise standard deviations up or down (added to the
counter's rate for counters). The true effect is that shift.

Prints, overall and per kind: how often the 90 % interval covers the true
effect (target 85-95 %), how often "significant" is said on no-effect
deploys (target at most 10 %) and on deploys with an effect (power).

    .venv/bin/python benchmarks/change_impact.py [--deploys 300] [--first-seed 5000]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from scipy.signal import lfilter

from perfintel.analysis.change_impact import assess_change

DAY = 1440
KINDS = ("seasonal", "trend", "counter", "latency")
LEVEL = 0.9


def deploy(seed: int) -> tuple[str, np.ndarray, int, int, float, bool]:
    """``(kind, values, change index, after, true effect, counter)``."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    after = int(rng.choice([30, 60, 120]))
    n_hist = 3 * DAY
    n = n_hist + after
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    daily = np.sin(2 * np.pi * t / DAY + phase)
    phi = rng.uniform(0.0, 0.95)
    sd = rng.uniform(1.0, 3.0)
    noise = lfilter([1.0], [1.0, -phi], rng.normal(0, sd * np.sqrt(1 - phi * phi), n))
    effect_sd = 0.0 if rng.random() < 0.4 else rng.uniform(0.5, 6.0) * rng.choice([-1, 1])
    counter = False
    if kind == "seasonal":
        y = 100 + rng.uniform(5, 30) * daily + noise
        shift = effect_sd * sd
    elif kind == "trend":
        y = 100 + rng.uniform(5, 20) * daily + rng.uniform(-10, 10) * t / DAY + noise
        shift = effect_sd * sd
    elif kind == "counter":
        base = rng.uniform(50, 300)
        rate = base * (1 + 0.4 * daily) * np.exp(noise / 50)
        shift = effect_sd * np.sqrt(base)
        rate[n_hist:] += shift
        inc = rng.poisson(np.maximum(rate, 0)).astype(np.float64)
        y = np.cumsum(inc) + 1e6
        counter = True
        return kind, y, n_hist, after, float(shift), counter
    else:
        base = rng.uniform(0.05, 0.5)
        y = base * np.exp(0.2 * daily + 0.05 * noise)
        shift = effect_sd * 0.05 * base * sd
    y[n_hist:] += shift
    return kind, y, n_hist, after, float(shift), counter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploys", type=int, default=300)
    ap.add_argument("--first-seed", type=int, default=5000)
    args = ap.parse_args(argv)
    stats: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    times = []
    for seed in range(args.first_seed, args.first_seed + args.deploys):
        kind, y, change, after, truth, counter = deploy(seed)
        t0 = time.perf_counter()
        r = assess_change(y, change, after, step_seconds=60, level=LEVEL, counter=counter)
        times.append(time.perf_counter() - t0)
        covered = r.lower <= truth <= r.upper
        for key in (kind, "all"):
            stats[key]["covered"].append(covered)
            stats[key]["null" if truth == 0 else "effect"].append(r.significant)
            stats[key]["conformal"].append(r.method == "conformal")
    print(
        f"{args.deploys} deploys, seeds {args.first_seed}-{args.first_seed + args.deploys - 1}, "
        f"{LEVEL:.0%} intervals; median {1000 * float(np.median(times)):.0f} ms per assessment"
    )
    print()
    print("| kind | deploys | coverage | false positives (no effect) | power (effect) |")
    print("|---|---|---|---|---|")
    for key in (*KINDS, "all"):
        s = stats[key]
        null, eff = np.array(s["null"], bool), np.array(s["effect"], bool)
        print(
            f"| {key} | {len(s['covered'])} | {100 * np.mean(s['covered']):.1f} % | "
            f"{100 * null.mean():.1f} % of {null.size} | {100 * eff.mean():.1f} % of {eff.size} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
