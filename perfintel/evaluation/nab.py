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

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

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


def read_series(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from exc
    if "timestamp" not in df.columns or "value" not in df.columns:
        raise BadInputError(f"{path} needs columns timestamp,value")
    ts = pd.to_datetime(df["timestamp"]).to_numpy(dtype="datetime64[ms]").astype(np.int64)
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=np.float64)
    return df, ts, values


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
        pd.DataFrame(
            {"timestamp": df["timestamp"], "value": df["value"], "anomaly_score": out["score"]}
        ).to_csv(dest, index=False)
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
