"""Run the anomaly detector over the Numenta Anomaly Benchmark corpus.

``run_nab`` streams every ``DATA_DIR/<category>/<name>.csv`` (columns
``timestamp,value``) through the detector, one row at a time in file order,
and writes ``OUT_DIR/<category>/<name>.csv`` with ``timestamp,value,anomaly_score``
— one output row per input row, same order (NAB timestamps may repeat or step
back; the detector sees them as they are). Each file is its own series with a
fresh state (exactly the scores of a per-file ``Detector``). Score the output
with NAB's scorer (``../shared/tools/nab_score.py``), or cross-validate the
detector's constants with ``nab_cv``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perfintel.analysis.anomaly.base import VectorModel
from perfintel.analysis.anomaly.ensemble import Ensemble
from perfintel.errors import BadInputError

Progress = Callable[[int, int], None]


def stream_series(
    model: VectorModel,
    series: list[tuple[np.ndarray, np.ndarray]],
    progress: Progress | None = None,
    keep: tuple[str, ...] = (),
) -> list[dict[str, np.ndarray]]:
    """Feed each ``(ts_ms, values)`` series through its own fresh state, in file order.

    Returns per series a dict with ``score`` and any ``keep`` outputs of the model.
    """
    total = sum(len(v) for _, v in series)
    done = 0
    result: list[dict[str, np.ndarray]] = []
    for t, v in series:
        st = model.new_state(1)
        full = model.run(st, np.zeros(len(v), dtype=np.int64), t, v)
        result.append({name: full[name] for name in ("score", *keep)})
        done += len(v)
        if progress is not None:
            progress(done, total)
    return result


@dataclass
class NabFile:
    """A NAB data file's two columns as written (kept to echo them in the results)."""

    timestamp: list[str]
    value: list[str]


def read_series(path: Path) -> tuple[NabFile, np.ndarray, np.ndarray]:
    """``(the file's columns as text, timestamps in ms, values)``; an unreadable value is NaN."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from exc
    header = rows[0] if rows else []
    if "timestamp" not in header or "value" not in header:
        raise BadInputError(f"{path} needs columns timestamp,value")
    ti, vi = header.index("timestamp"), header.index("value")
    body = [r for r in rows[1:] if r]
    columns = NabFile([r[ti] for r in body], [r[vi] for r in body])
    try:
        ts = np.array(columns.timestamp, dtype="datetime64[ms]").astype(np.int64)
    except ValueError as exc:
        raise BadInputError(f"{path}: bad timestamp: {exc}") from exc
    values = np.array([_number(v) for v in columns.value], dtype=np.float64)
    return columns, ts, values


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def run_nab(
    data_dir: Path,
    out_dir: Path,
    plots_dir: Path | None = None,
    progress: Progress | None = None,
    model: VectorModel | None = None,
) -> dict:
    """Score every NAB file in streaming order; write results (and plots). Returns a summary."""
    started = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    files = sorted(p for p in data_dir.glob("*/*.csv") if p.is_file())
    if not files:
        raise BadInputError(f"no <category>/<name>.csv files under {data_dir}")
    model = model or Ensemble()
    frames = [read_series(p) for p in files]
    keep = ("fired",) if plots_dir is not None else ()
    series = [(t, v) for _, t, v in frames]
    outs = stream_series(model, series, progress, keep=keep)
    rows = 0
    for path, (df, _, values), out in zip(files, frames, outs, strict=True):
        rel = path.relative_to(data_dir)
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["timestamp", "value", "anomaly_score"])
            writer.writerows(
                zip(df.timestamp, df.value, map(repr, out["score"].tolist()), strict=True)
            )
        rows += len(values)
        if plots_dir is not None:
            from perfintel.evaluation.plots import plot_series

            plot_series(
                Path(plots_dir) / rel.with_suffix(".png"),
                str(rel),
                values,
                out["score"],
                out["fired"],
                getattr(getattr(model, "config", None), "alarm", None),
            )
    return {
        "files": len(files),
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "state_bytes_per_series": model.state_nbytes(),
    }
