"""Predictive alerts: lead time on a filling disk, false alarms on 10 control series, vs predict_linear.

Two scenario generators (``A`` and ``B``, written independently: different
growth, seasonality, rotation and noise), 30 days at a 5-minute scrape,
capacity 100 GB. Each has

* a **disk that fills**: growth plus a daily cycle plus log-rotation drops
  (A: linear growth, rotation at midnight; B: accelerating growth, rotation
  every 6 hours, daily and weekly cycles) — it crosses the capacity late in
  the month;
* **10 controls** that never fill: flat, daily and weekly seasonal,
  sawtooths (rotation every 2 h to every 7 days, some riding a daily cycle),
  a steep morning ramp, spikes, a step down, a bounded random walk.

Replay through the real store and the real rule engine on a simulated clock:
every 5 minutes the new samples are appended to a DuckDB store and the rule
groups due are evaluated (``GroupRuntime.evaluate``, the service's code).
Rules (all with ``for: 1h``):

* perfintel ``threshold_approaching`` on ``used / size`` reaching 1 within
  12 h (the 80 % band, P10 edge), hourly;
* perfintel ``capacity_exhaustion`` (P10 exhaustion time within 12 h), hourly;
* Prometheus ``predict_linear(used[6h], 12h) > size`` (same horizon) and the
  node-exporter mixin's ``predict_linear(used[6h], 24h) > size``, every 5 min.

Constants are chosen by reasoning, not fitted to these generators: the
horizon is twice the 6 h of notice asked for; the P10 edge is the pessimistic
edge of a calibrated 80 % interval; ``min_history: 3d`` is enough history for
a daily cycle to be seen twice; ``for: 1h`` is the mixin's own.

Prints per rule: the disk's first alert and the lead before the crossing,
and the number of alerts (firing spells) on the controls. Targets: lead ≥
6 h, 0 control alerts.

Run: ``.venv/bin/python benchmarks/predictive_alerts.py [--variants A,B]``
(roughly 30-60 minutes: two 30-day replays with forecasts every hour).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perfintel.alerting.model import Alert
from perfintel.alerting.rules.files import parse_rules
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime
from perfintel.alerting.rules.reader import RoundReader
from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, label_set
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

DAY = 86400.0
STEP = 300.0
GB = 1e9
CAPACITY = 100.0

RULES = """
groups:
  - name: perfintel-predictive
    interval: 1h
    rules:
      - alert: DiskFullForecast
        kind: threshold_approaching
        expr: disk_used_bytes / disk_size_bytes
        threshold: 1
        within: 12h
        level: 80
        step: 1h
        history: 28d
        min_history: 3d
        for: 1h
      - alert: DiskFullCapacity
        kind: capacity_exhaustion
        expr: disk_used_bytes
        capacity: disk_size_bytes
        within: 12h
        bound: p10
        step: 1h
        history: 28d
        min_history: 3d
        for: 1h
  - name: predict-linear
    interval: 5m
    rules:
      - alert: PredictLinear12h
        expr: predict_linear(disk_used_bytes[6h], 12 * 3600) > disk_size_bytes
        for: 1h
      - alert: PredictLinear24hMixin
        expr: predict_linear(disk_used_bytes[6h], 24 * 3600) > disk_size_bytes
        for: 1h
"""

Series = dict[str, np.ndarray]


def generator_a(days: int, seed: int) -> tuple[np.ndarray, Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, STEP)
    tod, dow = (t % DAY) / DAY, (t % (7 * DAY)) / (7 * DAY)
    out: Series = {}
    growth = (93.0 - 46.0) / (24.3 * DAY)
    out["disk"] = (
        40 + growth * t + 3 * np.sin(2 * np.pi * (tod - 0.3)) + 6 * tod + rng.normal(0, 0.3, t.size)
    )
    out["flat50"] = 50 + rng.normal(0, 0.5, t.size)
    out["flat75"] = 75 + rng.normal(0, 1.0, t.size)
    out["daily60"] = 60 + 15 * np.sin(2 * np.pi * tod) + rng.normal(0, 1, t.size)
    out["daily_weekly"] = (
        55 + 10 * np.sin(2 * np.pi * tod) + 5 * np.sin(2 * np.pi * dow) + rng.normal(0, 1, t.size)
    )
    out["saw_daily"] = 40 + 30 * tod + rng.normal(0, 0.3, t.size)
    out["saw_6h"] = 50 + 15 * ((t % (6 * 3600)) / (6 * 3600)) + rng.normal(0, 0.3, t.size)
    out["saw_season85"] = (
        55 + 20 * tod + 8 * np.sin(2 * np.pi * (tod - 0.25)) + rng.normal(0, 0.5, t.size)
    )
    out["saw_weekly"] = 30 + 45 * dow + rng.normal(0, 0.5, t.size)
    ramp = np.clip((tod - 0.3) / 0.08, 0, 1) - np.clip((tod - 0.8) / 0.08, 0, 1)
    out["morning_ramp"] = 40 + 40 * ramp + rng.normal(0, 1, t.size)
    spikes = (rng.random(t.size) < 0.01) * rng.uniform(5, 20, t.size)
    out["spiky60"] = 60 + spikes + rng.normal(0, 0.5, t.size)
    return t, out


def generator_b(days: int, seed: int) -> tuple[np.ndarray, Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, STEP)
    tod, dow = (t % DAY) / DAY, (t % (7 * DAY)) / (7 * DAY)
    out: Series = {}
    rate = (90.0 - 30.0) / (22.2 * DAY)
    rotation = 4.0 * ((t % (6 * 3600)) / (6 * 3600))
    season = 2.0 * np.sin(2 * np.pi * tod) + 1.0 * np.sin(2 * np.pi * dow)
    out["disk"] = (
        30
        + rate * t * (0.7 + 0.6 * t / (days * DAY))
        + rotation
        + season
        + rng.normal(0, 0.5, t.size)
    )
    out["flat30"] = 30 + rng.normal(0, 2, t.size)
    out["flat85"] = 85 + rng.normal(0, 0.5, t.size)
    out["daily70"] = 70 + 12 * np.cos(2 * np.pi * tod) + rng.normal(0, 2, t.size)
    out["weekly"] = 50 + 20 * np.sin(2 * np.pi * dow) + rng.normal(0, 1, t.size)
    out["saw_12h"] = 35 + 40 * ((t % (12 * 3600)) / (12 * 3600)) + rng.normal(0, 1, t.size)
    out["saw_2h"] = 60 + 10 * ((t % (2 * 3600)) / (2 * 3600)) + rng.normal(0, 0.5, t.size)
    out["saw_daily_90"] = 50 + 40 * tod + rng.normal(0, 0.5, t.size)
    out["saw_3d"] = 20 + 60 * ((t % (3 * DAY)) / (3 * DAY)) + rng.normal(0, 1, t.size)
    out["step_down"] = np.where(t < 15 * DAY, 80, 60) + rng.normal(0, 0.5, t.size)
    out["random_walk"] = np.clip(60 + np.cumsum(rng.normal(0, 0.2, t.size)), 20, 88)
    return t, out


GENERATORS: dict[str, Callable[[int, int], tuple[np.ndarray, Series]]] = {
    "A": generator_a,
    "B": generator_b,
}


class FirstFiring:
    """A sink that remembers when each alert first fired and counts firing spells."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.spells: dict[tuple[str, str], set[float]] = {}
        self.now = 0.0

    def send(self, alerts: list[Alert]) -> None:
        for a in alerts:
            if a.resolved(self.now):
                continue
            labels = dict(a.labels)
            key = (labels["alertname"], labels.get("mount", ""))
            self.first.setdefault(key, self.now)
            self.spells.setdefault(key, set()).add(a.starts_at)


def replay(
    t: np.ndarray, series: Series, t0: float, rules: str = RULES
) -> tuple[dict[str, float], FirstFiring, list[str]]:
    """Replay series (usage in % of a 100 GB disk, one value per ``STEP`` at offsets ``t``
    seconds from ``t0``; a ``"disk"`` series that fills, the rest controls) through a DuckDB
    store and the rule engine. Any generator's output can be replayed this way. ``t0`` should
    be recent: the store keeps raw samples by wall-clock retention (set here to cover them)."""
    days = float(t[-1] - t[0]) / DAY + 1
    crossing = {}
    for name, v in series.items():
        hit = np.flatnonzero(v >= CAPACITY)
        crossing[name] = t0 + t[hit[0]] if hit.size else np.inf
        series[name] = np.minimum(v, CAPACITY)  # a full disk stays full
    labels: dict[str, tuple[LabelSet, LabelSet]] = {
        name: (
            label_set({"__name__": "disk_used_bytes", "mount": name}),
            label_set({"__name__": "disk_size_bytes", "mount": name}),
        )
        for name in series
    }
    sink = FirstFiring()
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(
            Path(tmp) / "samples",
            StoreOptions(wal_fsync=False, raw_retention_ms=int((days + 30) * DAY * 1000)),
        )
        try:
            groups = [GroupRuntime(g, EvalOptions()) for g in parse_rules(rules, "predictive.yml")]
            due = [t0 for _ in groups]
            for i in range(t.size):
                now = t0 + t[i]
                names = list(series)
                batch = SampleBatch(
                    [labels[n][0] for n in names] + [labels[n][1] for n in names],
                    np.arange(2 * len(names), dtype=np.int32),
                    np.full(2 * len(names), int(now * 1000), dtype=np.int64),
                    np.array([series[n][i] * GB for n in names] + [CAPACITY * GB] * len(names)),
                )
                store.append(batch)
                sink.now = now
                reader = RoundReader(store)
                for k, g in enumerate(groups):
                    if now >= due[k]:
                        g.evaluate(now, store, sink, reader=reader)  # type: ignore[arg-type]
                        due[k] = now + g.interval_s
                        errors = [r for r in g.rules if r.health == "err"]
                        if errors:
                            raise SystemExit(f"{errors[0].spec.name}: {errors[0].last_error}")
        finally:
            store.close()
    names = [r.name for g in parse_rules(rules, "predictive.yml") for r in g.rules]
    return crossing, sink, names


def report(
    variant: str, crossing: dict[str, float], sink: FirstFiring, rules: list[str], t0: float
) -> bool:
    disk_cross = crossing["disk"]
    controls = [n for n in crossing if n != "disk"]
    assert all(not np.isfinite(crossing[c]) for c in controls), "a control crossed"
    print(f"\nvariant {variant}: disk crosses at day {(disk_cross - t0) / DAY:.2f}")
    print(f"  {'rule':24s} {'disk lead':>12s} {'control alerts':>15s}  controls alerting")
    ok_all = True
    perfintel = [r for r in rules if not r.startswith("PredictLinear")]
    for rule in [*rules, "perfintel (both rules)"]:
        members = perfintel if rule.startswith("perfintel") else [rule]
        firsts = [sink.first.get((m, "disk"), np.inf) for m in members]
        first = min(firsts)
        lead = (disk_cross - first) / 3600 if first <= disk_cross else None
        noisy = {c: sum(len(sink.spells.get((m, c), ())) for m in members) for c in controls}
        n = sum(noisy.values())
        lead_txt = "none" if lead is None else f"{lead:.1f} h"
        names = ", ".join(f"{c}:{k}" for c, k in noisy.items() if k)
        print(f"  {rule:24s} {lead_txt:>12s} {n:>15d}  {names}")
        if rule.startswith("perfintel"):
            ok = lead is not None and lead >= 6 and n == 0
            ok_all = ok
            print(f"  target (lead >= 6 h, 0 control alerts): {'met' if ok else 'NOT met'}")
    return ok_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="A,B")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = []
    for v in args.variants.split(","):
        began = time.perf_counter()
        t0 = (time.time() // DAY - args.days - 1) * DAY  # midnight, the days ending about now
        t, series = GENERATORS[v](args.days, args.seed)
        crossing, sink, rules = replay(t, series, t0)
        results.append(report(v, crossing, sink, rules, t0))
        print(f"  (replayed {args.days} days in {time.perf_counter() - began:.0f} s)")
    print("\nall variants met the target" if all(results) else "\nsome variant missed the target")


if __name__ == "__main__":
    main()
