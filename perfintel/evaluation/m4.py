"""M4-format evaluation: forecast every series of a train file, write the forecasts.

The M4 layout (Makridakis, Spiliotis & Assimakopoulos, IJF 2020): a CSV with a
header, the series id in the first column, then the observations left-aligned
and padded with empty cells. :func:`run_m4` forecasts ``horizon`` steps for
every row with the automatic forecaster and writes ``id,F1..Fh``; optionally
the 80 % and 95 % interval bounds (``id,level,side,F1..Fh`` with ``side`` =
``lo`` or ``hi``) and a PNG per series for a sample of series.
:func:`coverage` measures how often a test file's values fall inside those
intervals. Scoring of the point forecasts (sMAPE, MASE, OWA) is left to the
shared ``forecast_eval.py``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from perfintel.analysis.forecast import ForecastResult, forecast_many
from perfintel.errors import BadInputError

LEVELS = (80, 95)
#: number of series drawn (evenly spaced) when plotting
PLOT_SAMPLE = 12


def read_m4(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Stream ``(id, values)`` rows of an M4-format CSV (padding dropped)."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        try:
            next(reader)
        except StopIteration:
            return
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            cells = [c.strip() for c in row[1:]]
            while cells and cells[-1] in ("", "NA", "nan", "NaN"):
                cells.pop()
            try:
                values = np.array(
                    [float(c) if c not in ("", "NA") else np.nan for c in cells], dtype=np.float64
                )
            except ValueError as exc:
                raise BadInputError(f"{path}:{line_no}: {exc}") from exc
            yield row[0].strip(), values


def _fmt(v: float) -> str:
    return f"{v:.6g}" if np.isfinite(v) else "NaN"


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def run_m4(
    train_csv: Path,
    out_csv: Path,
    *,
    horizon: int = 48,
    freq_seconds: int = 3600,
    intervals_csv: Path | None = None,
    plots_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Forecast every series of ``train_csv`` and write M4 submission-format files.

    Seasonal periods are the daily and weekly ones for ``freq_seconds`` (those
    the series is long enough for). Uses up to two worker processes.
    """
    rows = list(read_m4(Path(train_csv)))
    ids = [sid for sid, _ in rows]
    results = forecast_many(
        [v for _, v in rows],
        horizon,
        step_seconds=float(freq_seconds),
        levels=LEVELS,
        workers=_workers(),
        progress=progress,
    )
    cols = [f"F{i}" for i in range(1, horizon + 1)]
    with open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *cols])
        for sid, res in zip(ids, results, strict=True):
            w.writerow([sid, *map(_fmt, res.mean)])
    if intervals_csv is not None:
        with open(intervals_csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "level", "side", *cols])
            for sid, res in zip(ids, results, strict=True):
                for lv in LEVELS:
                    w.writerow([sid, lv, "lo", *map(_fmt, res.lo[lv])])
                    w.writerow([sid, lv, "hi", *map(_fmt, res.hi[lv])])
    if plots_dir is not None:
        plot_sample(rows, results, Path(plots_dir))


def plot_sample(
    rows: list[tuple[str, np.ndarray]], results: list[ForecastResult], plots_dir: Path
) -> list[Path]:
    """A PNG per series for up to ``PLOT_SAMPLE`` evenly spaced series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    if not rows:
        return []
    picks = sorted(set(np.linspace(0, len(rows) - 1, min(PLOT_SAMPLE, len(rows))).astype(int)))
    written = []
    for k in picks:
        sid, y = rows[k]
        res = results[k]
        h = res.mean.size
        tail = y[-min(y.size, 7 * h) :]
        t0 = np.arange(-tail.size, 0)
        t1 = np.arange(h)
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(t0, tail, color="0.2", lw=1, label="history")
        for lv, alpha in ((95, 0.18), (80, 0.32)):
            if lv in res.lo:
                ax.fill_between(
                    t1, res.lo[lv], res.hi[lv], color="C0", alpha=alpha, lw=0, label=f"{lv} %"
                )
        ax.plot(t1, res.mean, color="C0", lw=1.5, label="forecast")
        ax.set_title(f"{sid} — {res.model}", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        path = plots_dir / f"{sid}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def coverage(intervals_csv: Path, test_csv: Path) -> dict[int, float]:
    """Fraction of test values inside each level's interval (over all series and steps)."""
    test = dict(read_m4(Path(test_csv)))
    bounds: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    with open(intervals_csv, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if not row:
                continue
            vals = np.array([float(c) for c in row[3:]], dtype=np.float64)
            bounds.setdefault((row[0], int(row[1])), {})[row[2]] = vals
    hits: dict[int, list[np.ndarray]] = {}
    for (sid, lv), b in bounds.items():
        if sid not in test or "lo" not in b or "hi" not in b:
            continue
        y = test[sid]
        k = min(y.size, b["lo"].size)
        hits.setdefault(lv, []).append((y[:k] >= b["lo"][:k]) & (y[:k] <= b["hi"][:k]))
    return {lv: float(np.mean(np.concatenate(v))) for lv, v in sorted(hits.items())}


def main(argv: list[str] | None = None) -> int:
    """``python -m perfintel.evaluation.m4 --train T --out F [--intervals I] [--plots D] [--test X]``."""
    import argparse
    import sys
    import time

    ap = argparse.ArgumentParser(
        prog="python -m perfintel.evaluation.m4", description=run_m4.__doc__
    )
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--horizon", type=int, default=48)
    ap.add_argument("--freq-seconds", type=int, default=3600)
    ap.add_argument("--intervals", type=Path, default=None)
    ap.add_argument("--plots", type=Path, default=None)
    ap.add_argument("--test", type=Path, default=None, help="print interval coverage on this file")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    run_m4(
        a.train,
        a.out,
        horizon=a.horizon,
        freq_seconds=a.freq_seconds,
        intervals_csv=a.intervals,
        plots_dir=a.plots,
    )
    print(f"forecast {a.train} -> {a.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if a.test is not None and a.intervals is not None:
        for lv, c in coverage(a.intervals, a.test).items():
            print(f"coverage {lv}%: {c:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
