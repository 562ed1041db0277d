"""One evaluation round of 10,000 alerting rules over a real DuckDB store, on one core.

Data: 300 metrics × 20 instances (6,000 series, 4 jobs), the last 15 minutes
at a 15 s scrape, flushed to the DuckDB file (reads decode chunks, as on a
server). Rules: 10,000 simple thresholds in 100 groups of 100, e.g.
``metric_017{instance="host-03"} > 0.8`` (70 %), ``metric_017 > 0.95``
(20 %: every series of the metric) and ``avg by (job) (metric_017) > 0.6``
(10 %), thresholds drawn so that about a tenth of the rules have alerts;
each alerting rule has a label and a templated annotation.

A round is every group evaluated at the same time (as the backtest replays
them and as groups with the same interval line up), through the real
engine: PromQL, the alert lifecycle, ``ALERTS``/``ALERTS_FOR_STATE``
appended to the store, alerts to a sink, changed states written to the
alerting database (SQLite file). Three ways of reading are timed:

* ``shared``  — one read cache for the whole round (each metric read once);
* ``group``   — one cache per group (what the service does: groups run
  staggered, each at its own time);
* ``none``    — every rule reads the store itself.

Plain thresholds are evaluated from their plan (no PromQL engine); with
``--engine-only`` every rule goes through the engine, to see what that saves.

Round 1 is cold (every alert is new: all of them are written to the
database); rounds 2-3 are steady state (only changes are written). The
process is pinned to one CPU (``sched_setaffinity``). Prints seconds per
round and rules/s; the target is ≤ 10 s per round of 10,000 rules.

Run: ``.venv/bin/python benchmarks/rule_eval.py [--rules 10000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from perfintel.alerting.model import CollectingSink
from perfintel.alerting.rules.files import parse_rules
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime
from perfintel.alerting.rules.lifecycle import FlapSettings
from perfintel.alerting.rules.reader import RoundReader
from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.rule_store import SqlRuleState
from perfintel.batch import BatchBuilder
from perfintel.model import label_set
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

METRICS = 300
INSTANCES = 20
JOBS = 4
SCRAPE_S = 15
SPAN_S = 900


def load(store: DuckDBStore, now: float, rng: np.random.Generator) -> None:
    ts = (now - SPAN_S + SCRAPE_S * np.arange(SPAN_S // SCRAPE_S + 1)) * 1000
    b = BatchBuilder()
    for m in range(METRICS):
        for i in range(INSTANCES):
            labels = label_set(
                {
                    "__name__": f"metric_{m:03d}",
                    "instance": f"host-{i:02d}",
                    "job": f"job-{i % JOBS}",
                }
            )
            level = rng.uniform(0, 1)
            b.add_many(
                labels, ts.astype(np.int64), np.clip(level + rng.normal(0, 0.02, ts.size), 0, 1)
            )
    store.append(b.build())
    store.flush()


def rules_yaml(n: int, per_group: int, rng: np.random.Generator) -> str:
    lines = ["groups:"]
    for g in range(0, n, per_group):
        lines += [f"  - name: group-{g // per_group:03d}", "    interval: 1m", "    rules:"]
        for k in range(g, min(n, g + per_group)):
            m = f"metric_{rng.integers(METRICS):03d}"
            r = rng.random()
            if r < 0.7:
                expr = f'{m}{{instance="host-{rng.integers(INSTANCES):02d}"}} > {rng.uniform(0.5, 1.0):.3f}'
            elif r < 0.9:
                expr = f"{m} > {rng.uniform(0.95, 1.0):.3f}"
            else:
                expr = f"avg by (job) ({m}) > {rng.uniform(0.55, 0.75):.3f}"
            lines += [
                f"      - alert: Rule{k:05d}",
                f"        expr: {expr}",
                "        labels: {severity: warning}",
                '        annotations: {summary: "{{ $labels.instance }} at {{ $value | humanize }}"}',
            ]
    return "\n".join(lines) + "\n"


def run_round(
    groups: list[GroupRuntime], store: DuckDBStore, now: float, mode: str, sink: CollectingSink
) -> float:
    t0 = time.perf_counter()
    shared = RoundReader(store) if mode == "shared" else None
    for g in groups:
        if mode == "none":
            reader: RoundReader = _Passthrough(store)
        else:
            reader = shared or RoundReader(store)
        g.evaluate(now, store, sink, reader=reader)
    return time.perf_counter() - t0


class _Passthrough(RoundReader):
    """No caching: every selector goes to the store."""

    def select(self, selector, start_ms, end_ms, *, limits=None):  # type: ignore[no-untyped-def]
        return self.store.select(selector, start_ms, end_ms, limits=limits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--per-group", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="shared,group,none")
    ap.add_argument(
        "--engine-only",
        action="store_true",
        help="evaluate plain thresholds with the PromQL engine too (no threshold plans)",
    )
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        now = float(int(time.time()))
        store = DuckDBStore(Path(tmp) / "samples", StoreOptions(wal_fsync=False))
        try:
            load(store, now, rng)
            specs = parse_rules(rules_yaml(args.rules, args.per_group, rng), "bench.yml")
            n_rules = sum(len(g.rules) for g in specs)
            print(
                f"{n_rules} alerting rules in {len(specs)} groups over {METRICS * INSTANCES} series "
                f"({METRICS} metrics), one CPU"
            )
            for mode in args.modes.split(","):
                engine = open_database(f"sqlite:///{Path(tmp) / f'alerting-{mode}.db'}")
                state = SqlRuleState(engine)
                options = EvalOptions(flap=FlapSettings(threshold=4))
                groups = [GroupRuntime(s, options, state=state) for s in specs]
                if args.engine_only:
                    for g in groups:
                        for rule in g.rules:
                            rule.plan = None
                sink = CollectingSink()
                times = []
                for r in range(args.rounds):
                    times.append(run_round(groups, store, now + 60 * r, mode, sink))
                firing = sum(len(ru.active) for g in groups for ru in g.rules)
                steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
                print(
                    f"  reads {mode:6s}: round 1 (cold, all alerts new) {times[0]:6.2f} s "
                    f"= {n_rules / times[0]:7.0f} rules/s; steady (median of rounds 2-{len(times)}) "
                    f"{steady:6.2f} s = {n_rules / steady:7.0f} rules/s; "
                    f"{firing} alerts, {len(sink.received)} updates sent"
                )
                engine.dispose()
        finally:
            store.close()


if __name__ == "__main__":
    main()
