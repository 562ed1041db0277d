"""Capacity reports of this checkout against another checkout's, on many random inputs.

Loads ``perfintel/analysis/capacity.py`` of ``--old`` (e.g. a detached worktree
of ``main``) next to this checkout's module and plans the same random
resources with both: trend and sawtooth usage, flat and constant usage, usage
already over the capacity, 5-minute and hourly steps, horizons of 1 to 120
days, path counts that do and do not divide into the simulation's blocks.

Compares field by field, exactly (``==`` on floats): the first scenario's
result, the model, the utilisation and the backtest. The other scenarios are
counted separately: they may differ when their random draws were changed on
purpose (common random numbers across scenarios).

This checkout plans without the projection (``plan_capacity``'s default); with
``--projection`` it plans with it, and the projections are compared too (when
the old checkout has one: it always computed it before the flag).

    .venv/bin/python benchmarks/capacity_identity.py --old /tmp/main-checkout [--cases 300] [--projection]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.analysis import capacity as new_capacity  # noqa: E402


def load_old(checkout: Path) -> ModuleType:
    path = checkout / "perfintel" / "analysis" / "capacity.py"
    spec = importlib.util.spec_from_file_location("capacity_old", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["capacity_old"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def random_case(rng: np.random.Generator) -> dict[str, Any]:
    step = float(rng.choice([300.0, 3600.0]))
    n = int(rng.integers(40, 2500))
    t = np.arange(n, dtype=np.float64)
    per_day = 86_400 / step
    kind = str(rng.choice(["trend", "seasonal", "sawtooth", "flat", "constant", "steps", "full"]))
    cap = 100.0
    u0 = rng.uniform(10, 60)
    noise = rng.normal(0, rng.uniform(0.1, 3), n)
    slope = rng.uniform(-0.5, 5) / per_day
    if kind == "trend":
        u = u0 + slope * t + noise
    elif kind == "seasonal":
        u = u0 + slope * t + rng.uniform(2, 15) * np.sin(2 * np.pi * t / per_day) + noise
    elif kind == "sawtooth":
        period = int(rng.integers(8, max(9, n // 4)))
        u = u0 + slope * t + rng.uniform(0.5, 3) * (t % period) + 0.2 * noise
    elif kind == "flat":
        u = u0 + noise
    elif kind == "constant":
        u = np.full(n, u0)
    elif kind == "steps":
        u = u0 + np.cumsum(rng.random(n) < 0.01) * rng.uniform(1, 5) + noise
    else:
        u = 95 + slope * t + noise
    paths = int(rng.choice([400, 400, 37, 1]))
    scen = new_capacity.DEFAULT_SCENARIOS[: int(rng.integers(1, 4))]
    return {
        "timestamps": 1.7e9 + step * t,
        "usage": u,
        "capacity": cap,
        "horizon_days": float(rng.choice([1, 3, 7, 30, 90, 120])),
        "scenarios": scen,
        "paths": paths,
        "seed": int(rng.integers(0, 5)),
        "step_seconds": step,
    }


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a == b)


def result_fields(r: Any) -> tuple[Any, ...]:
    names = ("p10", "p50", "p90", "days_p10", "days_p50", "days_p90", "probability")
    return tuple(getattr(r, k) for k in (*names, "capacity_needed", "sentence"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="checkout holding the old module")
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--projection", action="store_true", help="plan with the projection")
    a = ap.parse_args()
    old = load_old(a.old)
    rng = np.random.default_rng(a.seed)
    first_differ = other_differ = others = projection_differ = projections = 0
    for i in range(a.cases):
        case = random_case(rng)
        ro = old.plan_capacity(**case)
        rn = new_capacity.plan_capacity(**case, projection=a.projection)
        if (rn.projection is not None) != a.projection:
            raise SystemExit(
                f"case {i}: projection {rn.projection!r} with --projection={a.projection}"
            )
        if a.projection and getattr(ro, "projection", None) is not None:
            projections += 1
            projection_differ += rn.projection != ro.projection
        bo, bn = ro.backtest, rn.backtest
        head_o = (ro.model, ro.utilisation_now, ro.step_seconds, ro.horizon_days)
        head_n = (rn.model, rn.utilisation_now, rn.step_seconds, rn.horizon_days)
        ok = head_o == head_n and (
            (bo is None and bn is None)
            or (
                bo is not None
                and bn is not None
                and (bo.smape, bo.coverage) == (bn.smape, bn.coverage)
            )
        )
        ok = ok and all(
            same(x, y)
            for x, y in zip(
                result_fields(ro.scenarios[0]), result_fields(rn.scenarios[0]), strict=True
            )
        )
        if not ok:
            first_differ += 1
            print(
                f"case {i}: first scenario, model or backtest differ: {ro.summary!r} vs {rn.summary!r}"
            )
        for so, sn in zip(ro.scenarios[1:], rn.scenarios[1:], strict=True):
            others += 1
            if not all(
                same(x, y) for x, y in zip(result_fields(so), result_fields(sn), strict=True)
            ):
                other_differ += 1
    print(
        f"{a.cases} cases: first scenario + model + backtest: {first_differ} differ; "
        f"other scenarios: {other_differ} of {others} differ"
        + (f"; projections: {projection_differ} of {projections} differ" if a.projection else "")
    )
    return 1 if first_differ or projection_differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
