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
one warm-up, and the API answer's size. Never a pass/fail. With ``--old
CHECKOUT`` (e.g. a detached worktree of ``main``) every case also runs that
checkout's ``perfintel/analysis/capacity.py`` and
``perfintel/performance/capacity.py`` (loaded next to this checkout's; the API
is pointed at them), alternating old and new run by run in one process, and
prints old/new: ratios from one run, since the machine is noisy. This checkout
plans with the projection (``projection=True``, as the Capacity page asks), as
a checkout from before the flag always did.

With ``--projection`` this checkout runs twice instead, without the projection
("off": ``plan_capacity(..., projection=False)``, the API's default) and with
it ("on"), alternating, and prints off/on and both answers' sizes.

    .venv/bin/python benchmarks/capacity_speed.py [--repeats 5] [--hosts 30] [--old DIR | --projection]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import inspect
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import perfintel.api.performance as api_performance  # noqa: E402
from perfintel.analysis import capacity as analysis_capacity  # noqa: E402
from perfintel.api.app import create_app  # noqa: E402
from perfintel.batch import SampleBatch  # noqa: E402
from perfintel.config import load_settings  # noqa: E402
from perfintel.model import label_set  # noqa: E402
from perfintel.performance import capacity as performance_capacity  # noqa: E402
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
    "projection": True,
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


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


class Versions:
    """This checkout's planning modules and, with ``--old``, another checkout's; or this
    checkout's without and with the projection (``--projection``)."""

    def __init__(self, old: Path | None, projection_ratio: bool = False) -> None:
        self.names = ["new"]
        self.analysis = {"new": analysis_capacity}
        self.performance = {"new": performance_capacity}
        #: the projection flag each version is called with (``None``: a checkout without it)
        self.projection: dict[str, bool | None] = {"new": True}
        if projection_ratio:
            self.names = ["off", "on"]
            for k in self.names:
                self.analysis[k], self.performance[k] = analysis_capacity, performance_capacity
            self.projection = {"off": False, "on": True}
        if old is not None:
            a = _load(old / "perfintel/analysis/capacity.py", "old_analysis_capacity")
            p = _load(old / "perfintel/performance/capacity.py", "old_performance_capacity")
            p.plan_capacity = a.plan_capacity  # type: ignore[attr-defined]
            # a report without a projection renders as one (``projection: null``): the old
            # side of the API is timed without the projection it did not compute
            if not hasattr(a.CapacityReport, "projection"):
                a.CapacityReport.projection = None
            if "projection" not in inspect.signature(p.analyze).parameters:
                # the API passes the flag on; a checkout from before it always projected
                analyze = p.analyze

                def without_flag(*args: Any, projection: bool = True, **kwargs: Any) -> Any:
                    return analyze(*args, **kwargs)

                p.analyze = without_flag  # type: ignore[attr-defined]
            self.names.insert(0, "old")
            self.analysis["old"], self.performance["old"] = a, p
            self.projection["old"] = None

    def plan_kwargs(self, name: str) -> dict[str, bool]:
        flag = self.projection[name]
        return {} if flag is None else {"projection": flag}

    @contextlib.contextmanager
    def serving(self, name: str) -> Iterator[None]:
        """The API plans with ``name``'s modules meanwhile."""
        api_performance.cap = self.performance[name]
        try:
            yield
        finally:
            api_performance.cap = performance_capacity


def timed(calls: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times per version, alternating versions run by run after one warm-up each."""
    for call in calls.values():
        call()
    out: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, call in calls.items():
            t0 = time.perf_counter()
            call()
            out[k].append(time.perf_counter() - t0)
    return out


def show(name: str, times: dict[str, list[float]]) -> None:
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}
    cells = "".join(f" {med[k]:10.1f} {1000 * min(v):9.1f}" for k, v in times.items())
    names = list(times)
    ratio = f" {med[names[0]] / med[names[1]]:8.2f}x" if len(names) == 2 else ""
    print(f"{name:52s}{cells}{ratio}")


def bench_plan(versions: Versions, repeats: int) -> None:
    end = 1_700_000_000_000
    ts = np.arange(end - 7 * DAY_MS, end, STEP_MS)
    used, total = memory_used(ts, 0)
    for days in (1, 7, 30, 365):

        def call(module: ModuleType, kwargs: dict[str, bool], d: float = days) -> None:
            module.plan_capacity(
                ts / 1000.0,
                used,
                total,
                horizon_days=d,
                scenarios=TRAFFIC_SCENARIOS,
                step_seconds=STEP_MS / 1000,
                **kwargs,
            )

        calls = {
            k: functools.partial(call, versions.analysis[k], versions.plan_kwargs(k))
            for k in versions.names
        }
        show(f"plan_capacity 7d of 5m, horizon {days}d", timed(calls, repeats))


def bench_api(versions: Versions, repeats: int, hosts: int) -> None:
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
            sizes: dict[str, int] = {}

            def as_version(name: str) -> None:
                flag = versions.projection[name]
                body = {**DASHBOARD_BODY, "end": end / 1000, "projection": flag is not False}
                with versions.serving(name):
                    r = client.post("/api/v1/performance/capacity/analyze", json=body)
                r.raise_for_status()
                n = len(r.json()["data"]["resources"])
                if n != hosts:
                    raise SystemExit(f"expected {hosts} resources, got {n}")
                sizes[name] = len(r.content)

            calls = {k: functools.partial(as_version, k) for k in versions.names}
            show(f"capacity API, {hosts} hosts' memory (dashboard body)", timed(calls, repeats))
            print(
                "capacity API answer size (bytes)".ljust(52)
                + "".join(f" {sizes[k]:20d}" for k in versions.names)
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hosts", type=int, default=30)
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--skip-plan", action="store_true")
    ap.add_argument("--old", type=Path, help="another checkout to compare with")
    ap.add_argument(
        "--projection", action="store_true", help="this checkout without and with the projection"
    )
    a = ap.parse_args()
    if a.old and a.projection:
        ap.error("--old and --projection compare different things: one at a time")
    versions = Versions(a.old, a.projection)
    head = "".join(f" {k + ' median':>10s} {k + ' min':>9s}" for k in versions.names)
    names = versions.names
    ratio = f" {names[0] + '/' + names[1]:>9s}" if len(names) == 2 else ""
    print(f"{'case (ms)':52s}{head}{ratio}   (n={a.repeats})")
    if not a.skip_plan:
        bench_plan(versions, a.repeats)
    if not a.skip_api:
        bench_api(versions, a.repeats, a.hosts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
