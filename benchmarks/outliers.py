"""Outliers among peers: accuracy on two generators of groups, and online speed.

    .venv/bin/python benchmarks/outliers.py [--groups 60] [--seed 0] [--speed-groups 1000]

Accuracy. Groups of 20-200 members that should behave alike, with 1-3
*planted* members that deviate for a few hours; every group is scored online
step by step (``OnlinePeerOutliers`` as the service runs it: one-minute steps,
one-hour window, tolerance 3 and pct 20 %, Datadog's published defaults — no
constant was chosen on these generators) and, for comparison, over each hour
with the batch scorer the API uses (``score_window``). Printed per generator
and per kind of deviation:

* planted members flagged: a planted member counts when it is flagged at least
  once while it deviates (online), or in an hour it deviates for more than
  half of (hourly);
* healthy member-hours flagged: every (member, hour) of members that never
  deviate, after the first hour, counted when the member is flagged at any
  step of that hour (online) or in that hour's window (hourly).

Generator A (``seasonal``): one-minute data over a day; a shared daily
pattern (sine and a peak) times a small member factor plus Gaussian noise;
deviations of kind *level* (4-8 peer spreads), *shape* (the member's daily
pattern shifted by 3-6 hours, or stuck at its mean) and *noise* (x4-x6).

Generator B (``heavy``, built differently, used only as a check): 30-second
data over 12 hours; a shared multiplicative pattern with a trend and a
square-wave duty cycle; Student-t (3 degrees of freedom) or log-normal noise;
5 % of points missing at random and some members with 20-minute gaps;
deviations of kind *level* (+20-45 % of the group level), *shape* (a sawtooth
or a drifting trend of its own) and *noise* (x4 heavy-tailed).

Speed. ``--speed-groups`` groups x 20 members: one step = one ``SampleBatch``
of a sample per member through ``OnlinePeerOutliers.process`` (series lookup,
step bucketing, scoring of the completed step); prints the median time per
step. No assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from perfintel.analysis.outliers import DEFAULT_PCT, DEFAULT_TOLERANCE, score_window
from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.performance.outliers_online import OnlinePeerOutliers, PeerGroupSpec

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (24 * HOUR)
KINDS = ("level", "shape", "noise")


@dataclass
class Group:
    ts: np.ndarray  # steps (ms)
    values: np.ndarray  # members x steps, NaN missing
    deviates: np.ndarray  # members x steps: the planted deviation is on
    kind: list[str]  # per member: "" healthy, else the planted kind
    step_ms: int


# -- generator A: seasonal, Gaussian ---------------------------------------------------


def seasonal_group(rng: np.random.Generator, level_k: float | None = None) -> Group:
    """One group of generator A; ``level_k`` plants only level shifts of that many spreads."""
    n = int(rng.integers(20, 201))
    steps = 24 * 60
    ts = T0 + MIN * np.arange(steps, dtype=np.int64)
    hour = (ts % (24 * HOUR)) / HOUR
    level = 10 ** rng.uniform(1, 3)
    amp = rng.uniform(0.1, 0.5)
    pattern = level * (
        1 + amp * np.sin(2 * np.pi * hour / 24) + 0.5 * amp * np.exp(-(((hour - 14) / 1.5) ** 2))
    )
    noise = rng.uniform(0.02, 0.08) * level
    factor = 1 + rng.normal(0, 0.01, n)
    values = factor[:, None] * pattern[None, :] + rng.normal(0, noise, (n, steps))
    deviates = np.zeros((n, steps), dtype=bool)
    kind = [""] * n
    peer_spread = float(np.median(np.std(values - np.median(values, axis=0), axis=1)))
    for m in rng.choice(n, size=int(rng.integers(1, 4)), replace=False):
        k = KINDS[int(rng.integers(3))] if level_k is None else "level"
        a = int(rng.integers(2 * 60, steps - 8 * 60))
        b = a + int(rng.integers(3 * 60, 8 * 60))
        on = slice(a, b)
        if k == "level":
            size = rng.uniform(4, 8) if level_k is None else level_k
            values[m, on] += rng.choice([-1, 1]) * size * peer_spread
        elif k == "shape":
            if rng.random() < 0.5:
                shift = int(rng.integers(3 * 60, 6 * 60))
                values[m, on] = np.roll(pattern, shift)[on] + rng.normal(0, noise, b - a)
            else:
                values[m, on] = level + rng.normal(0, noise, b - a)  # stuck at its mean
        else:
            values[m, on] = pattern[on] + rng.normal(0, noise * rng.uniform(4, 6), b - a)
        deviates[m, on] = True
        kind[m] = k
    # a shape change only deviates where the shapes differ by more than the band
    for m in range(n):
        if kind[m] == "shape":
            deviates[m] &= np.abs(values[m] - pattern) > DEFAULT_TOLERANCE * peer_spread
    return Group(ts, values, deviates, kind, MIN)


# -- generator B: heavy tails, trends, missing data --------------------------------------


def heavy_group(rng: np.random.Generator) -> Group:
    n = int(rng.integers(20, 201))
    step_ms = 30_000
    steps = 12 * 120
    ts = T0 + step_ms * np.arange(steps, dtype=np.int64)
    minutes = np.arange(steps) / 2.0
    base = rng.uniform(50, 5000)
    trend = 1 + rng.uniform(-0.3, 0.3) * minutes / minutes[-1]
    duty = np.where((minutes % rng.uniform(40, 120)) < rng.uniform(10, 30), 1.3, 1.0)
    shared = base * trend * duty
    values = np.empty((n, steps))
    kind = [""] * n
    deviates = np.zeros((n, steps), dtype=bool)
    heavy = rng.random() < 0.5
    scale = rng.uniform(0.03, 0.08)
    for m in range(n):
        if heavy:
            noise = shared * scale * rng.standard_t(3, steps)
            values[m] = shared + noise
        else:
            values[m] = shared * rng.lognormal(0, scale, steps)
    planted = rng.choice(n, size=int(rng.integers(1, 4)), replace=False)
    for m in planted:
        k = KINDS[int(rng.integers(3))]
        a = int(rng.integers(120, steps - 6 * 120))
        b = a + int(rng.integers(2 * 120, 5 * 120))
        if k == "level":
            values[m, a:b] *= 1 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.45)
        elif k == "shape":
            if rng.random() < 0.5:
                saw = (np.arange(b - a) % 60) / 60.0
                values[m, a:b] = shared[a:b] * (0.7 + 0.6 * saw)
            else:
                drift = np.linspace(0, rng.choice([-1, 1]) * 0.6, b - a)
                values[m, a:b] = shared[a:b] * (1 + drift)
        else:
            values[m, a:b] = shared[a:b] + shared[a:b] * scale * 4 * rng.standard_t(3, b - a)
        deviates[m, a:b] = True
        kind[m] = k
    values[rng.random((n, steps)) < 0.05] = np.nan
    for m in rng.choice(n, size=max(1, n // 10), replace=False):
        g = int(rng.integers(0, steps - 40))
        values[m, g : g + 40] = np.nan  # a 20-minute gap
    for m in planted:
        if kind[m] != "noise":  # only where the member is truly off its peers
            off = np.abs(values[m] / shared - 1) > 3 * scale * 1.5
            deviates[m] &= np.nan_to_num(off, nan=0.0).astype(bool) | (kind[m] == "level")
    return Group(ts, values, deviates, kind, step_ms)


# -- evaluation ----------------------------------------------------------------------


@dataclass
class Tally:
    planted: dict[str, list[int]] = field(default_factory=lambda: {k: [0, 0] for k in KINDS})
    healthy_hours: int = 0
    healthy_flagged: int = 0

    def line(self, label: str) -> str:
        hit = sum(v[0] for v in self.planted.values())
        total = sum(v[1] for v in self.planted.values())
        kinds = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in self.planted.items() if v[1])
        rate = self.healthy_flagged / max(self.healthy_hours, 1)
        return (
            f"  {label:<8} planted members flagged {hit}/{total} = {100 * hit / max(total, 1):5.1f} %"
            f" ({kinds});  healthy member-hours flagged {self.healthy_flagged}/"
            f"{self.healthy_hours} = {100 * rate:.2f} %"
        )


def evaluate(group: Group, online: Tally, hourly: Tally) -> None:
    """Score one group online and hourly; add to the tallies.

    A planted member whose deviation never leaves the peer band (a shape change
    smaller than the noise) does not deviate: it is counted in neither tally.
    """
    n, steps = group.values.shape
    per_hour = HOUR // group.step_ms
    labels = [label_set({"__name__": "m", "svc": "s", "i": str(i)}) for i in range(n)]
    peers = OnlinePeerOutliers([PeerGroupSpec(parse_selector("m"), ("svc",), group.step_ms, HOUR)])
    flagged = np.zeros((n, steps), dtype=bool)
    # ingest delivers an hour of samples per batch; every step is scored in order
    for h0 in range(0, steps, per_hour):
        block = group.values[:, h0 : h0 + per_hour]
        member, step = np.nonzero(np.isfinite(block))
        batch = SampleBatch(
            labels,
            member.astype(np.int32),
            group.ts[h0 + step],
            block[member, step],
        )
        for out in (peers.process(batch), peers.flush() if h0 + per_hour >= steps else None):
            if out is None or not len(out):
                continue
            members = np.array([int(dict(ls)["i"]) for ls in out.series], dtype=np.int64)
            cols = (out.timestamps - group.ts[0]) // group.step_ms
            flagged[members[out.series_idx], cols] = out.values > DEFAULT_PCT
    hours = steps // per_hour
    healthy = [m for m in range(n) if not group.kind[m]]
    planted = [m for m in range(n) if group.kind[m] and group.deviates[m].any()]
    for m in planted:
        k = group.kind[m]
        online.planted[k][1] += 1
        online.planted[k][0] += int(flagged[m, group.deviates[m]].any())
    for m in healthy:
        for h in range(1, hours):
            online.healthy_hours += 1
            online.healthy_flagged += int(flagged[m, h * per_hour : (h + 1) * per_hour].any())
    # the batch scorer over each hour (what the API answers for a one-hour range)
    dev_hours = group.deviates[:, : hours * per_hour].reshape(n, hours, per_hour).mean(axis=2)
    hit = dict.fromkeys((m for m in planted if (dev_hours[m] > 0.5).any()), False)
    for h in range(1, hours):
        sl = slice(h * per_hour, (h + 1) * per_hour)
        w = score_window(group.values[:, sl], DEFAULT_TOLERANCE, DEFAULT_PCT)
        for m in hit:
            hit[m] |= bool(dev_hours[m, h] > 0.5 and w.flagged[m])
        hourly.healthy_hours += len(healthy)
        hourly.healthy_flagged += int(w.flagged[healthy].sum())
    for m, ok in hit.items():
        hourly.planted[group.kind[m]][1] += 1
        hourly.planted[group.kind[m]][0] += int(ok)


def accuracy(groups: int, seed: int) -> None:
    for name, make in (("A seasonal", seasonal_group), ("B heavy", heavy_group)):
        rng = np.random.default_rng(seed)
        online, hourly = Tally(), Tally()
        started = time.perf_counter()
        for _ in range(groups):
            evaluate(make(rng), online, hourly)
        print(f"generator {name}: {groups} groups ({time.perf_counter() - started:.0f} s)")
        print(online.line("online"))
        print(hourly.line("hourly"))


def sensitivity(groups: int, seed: int) -> None:
    """How large a level shift must be: generator A with level shifts of fixed size only."""
    parts = []
    for k in (2.0, 3.0, 4.0, 6.0):
        rng = np.random.default_rng(seed + 7)
        online, hourly = Tally(), Tally()
        for _ in range(groups):
            evaluate(seasonal_group(rng, level_k=k), online, hourly)
        hit, total = online.planted["level"]
        parts.append(f"{k:g} spreads {hit}/{total}")
    print("  level shifts flagged online, by size: " + ", ".join(parts))


def speed(n_groups: int, members: int = 20, steps: int = 12) -> None:
    rng = np.random.default_rng(1)
    labels = [
        label_set({"__name__": "cpu", "service": f"s{g}", "host": f"h{m}"})
        for g in range(n_groups)
        for m in range(members)
    ]
    peers = OnlinePeerOutliers([PeerGroupSpec(parse_selector("cpu"), ("service",), MIN, HOUR)])
    idx = np.arange(len(labels), dtype=np.int32)
    times = []
    for t in range(steps + 2):
        batch = SampleBatch(
            labels,
            idx,
            np.full(len(labels), T0 + t * MIN, dtype=np.int64),
            50 + rng.normal(0, 5, len(labels)),
        )
        started = time.perf_counter()
        out = peers.process(batch)  # scores the previous step: this one may get more data
        if t >= 2:  # the first steps also learn the series
            times.append(time.perf_counter() - started)
            assert len(out) == len(labels)
    print(
        f"speed: {n_groups} groups x {members} members, one step through OnlinePeerOutliers: "
        f"median {1000 * statistics.median(times):.1f} ms, max {1000 * max(times):.1f} ms "
        f"({len(times)} steps)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=60, help="groups per generator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-groups", type=int, default=1000)
    args = ap.parse_args()
    accuracy(args.groups, args.seed)
    sensitivity(max(1, args.groups // 3), args.seed)
    speed(args.speed_groups)


if __name__ == "__main__":
    main()
