"""Side by side on M4 Hourly: perfintel's forecaster against statsforecast models.

Runs, on the same series (default: the development half in shared/data/m4),
perfintel's automatic forecaster and statsforecast's AutoETS(24),
MSTL(24, 168) with an AutoETS trend, and SeasonalNaive(24), and prints per
method sMAPE, MASE and OWA (the shared scorer's formulas, imported from its
file; Naive2 on the same series as the reference), the coverage of the 80 %
and 95 % intervals, the wall time, and the OWA and time relative to the best
statsforecast model. Both sides use two worker processes.

    .venv/bin/python benchmarks/forecast.py                # all series (minutes)
    .venv/bin/python benchmarks/forecast.py --limit 30     # quick look
    .venv/bin/python benchmarks/forecast.py --only perfintel
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from perfintel.analysis.forecast import forecast_many
from perfintel.evaluation.m4 import read_m4

# The shared benchmark data beside the repository (../shared), or where PERFINTEL_SHARED says.
SHARED = Path(os.environ.get("PERFINTEL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
H = 48
LEVELS = (80, 95)


def load_scorer(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("forecast_eval", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the scorer from {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_perfintel(series: list[np.ndarray], workers: int) -> tuple[list[np.ndarray], dict]:
    res = forecast_many(series, H, step_seconds=3600, levels=LEVELS, workers=workers)
    bands = {lv: [(r.lo[lv], r.hi[lv]) for r in res] for lv in LEVELS}
    return [r.mean for r in res], bands


def run_statsforecast(
    name: str, series: list[np.ndarray], workers: int
) -> tuple[list[np.ndarray], dict]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, SeasonalNaive

    model = {
        "AutoETS": lambda: AutoETS(season_length=24),
        "MSTL": lambda: MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN")),
        "SeasonalNaive": lambda: SeasonalNaive(season_length=24),
    }[name]()
    frames = [
        pd.DataFrame({"unique_id": f"s{i:04d}", "ds": np.arange(y.size), "y": y})
        for i, y in enumerate(series)
    ]
    df = pd.concat(frames, ignore_index=True)
    sf = StatsForecast(models=[model], freq=1, n_jobs=workers)
    out = sf.forecast(h=H, df=df, level=list(LEVELS))
    out = out.reset_index() if "unique_id" not in out.columns else out
    col = next(
        c
        for c in out.columns
        if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c
    )
    means: list[np.ndarray] = []
    bands: dict[float, list[tuple[np.ndarray, np.ndarray]]] = {lv: [] for lv in LEVELS}
    for i in range(len(series)):
        g = out[out["unique_id"] == f"s{i:04d}"].sort_values("ds")
        means.append(g[col].to_numpy(dtype=float))
        for lv in LEVELS:
            bands[lv].append(
                (g[f"{col}-lo-{lv}"].to_numpy(float), g[f"{col}-hi-{lv}"].to_numpy(float))
            )
    return means, bands


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=SHARED / "data/m4/Hourly-train.csv")
    ap.add_argument("--test", type=Path, default=SHARED / "data/m4/Hourly-test.csv")
    ap.add_argument("--scorer", type=Path, default=SHARED / "tools/forecast_eval.py")
    ap.add_argument("--limit", type=int, default=None, help="only the first N series")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="methods to run (perfintel AutoETS MSTL SeasonalNaive; default: all)",
    )
    a = ap.parse_args()
    fe = load_scorer(a.scorer)
    train = list(read_m4(a.train))[: a.limit]
    test = dict(read_m4(a.test))
    ids = [sid for sid, _ in train]
    series = [v for _, v in train]
    actual = [test[s][:H] for s in ids]
    scale = [fe.mase_scale(y, 24) for y in series]
    naive2 = [fe.naive2_forecast(y, H, 24) for y in series]

    def metrics(fc: list[np.ndarray]) -> tuple[float, float]:
        sm = float(np.mean([fe.smape(y, f).mean() for y, f in zip(actual, fc, strict=True)]))
        ms = float(
            np.mean([(np.abs(y - f) / s).mean() for y, f, s in zip(actual, fc, scale, strict=True)])
        )
        return sm, ms

    s2, m2 = metrics(naive2)
    methods = a.only or ["perfintel", "AutoETS", "MSTL", "SeasonalNaive"]
    rows = []
    for name in methods:
        t0 = time.perf_counter()
        if name == "perfintel":
            fc, bands = run_perfintel(series, a.workers)
        else:
            fc, bands = run_statsforecast(name, series, a.workers)
        dt = time.perf_counter() - t0
        sm, ms = metrics(fc)
        owa = 0.5 * (sm / s2 + ms / m2)
        cov = {
            lv: float(
                np.mean(
                    np.concatenate(
                        [
                            (y >= lo) & (y <= hi)
                            for y, (lo, hi) in zip(actual, bands[lv], strict=True)
                        ]
                    )
                )
            )
            for lv in LEVELS
        }
        rows.append((name, sm, ms, owa, cov[80], cov[95], dt))
        print(f"  done {name}: OWA {owa:.3f} in {dt:.1f} s", flush=True)
    print(f"\nM4 Hourly, {len(ids)} series, horizon {H}; Naive2 sMAPE {s2:.3f} MASE {m2:.3f}")
    sf_rows = [r for r in rows if r[0] != "perfintel"]
    best = min(sf_rows, key=lambda r: r[3]) if sf_rows else None
    head = f"{'method':14s} {'sMAPE':>7s} {'MASE':>6s} {'OWA':>6s} {'cov80':>6s} {'cov95':>6s} {'time s':>7s}"
    if best:
        head += f" {'OWA/best':>9s} {'time/best':>9s}"
    print(head)
    for name, sm, ms, owa, c80, c95, dt in rows:
        line = f"{name:14s} {sm:7.3f} {ms:6.3f} {owa:6.3f} {c80:6.3f} {c95:6.3f} {dt:7.1f}"
        if best:
            line += f" {owa / best[3]:9.3f} {dt / best[6]:9.3f}"
        print(line)
    if best:
        print(f"best statsforecast model: {best[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
