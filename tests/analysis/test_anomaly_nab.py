"""run_nab on a tiny generated corpus (the real corpus is scored in docs/anomaly.md)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perfintel.errors import BadInputError
from perfintel.evaluation import run_nab


def _write(path: Path, n: int, seed: int, repeat: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2014-04-01", periods=n, freq="5min")
    v = 20 + 5 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.5, n)
    v[int(n * 0.7) :] += 15
    if repeat:  # a repeated timestamp and a step back, as in NAB
        ts = ts.insert(100, ts[100]).delete(-1)
        ts = ts.insert(200, ts[150]).delete(-1)
    df = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": v})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return df


def test_run_nab_writes_one_row_per_input_row(tmp_path: Path) -> None:
    data = tmp_path / "data"
    frames = {
        "artificialX/a.csv": _write(data / "artificialX" / "a.csv", 900, 1, repeat=True),
        "artificialX/b.csv": _write(data / "artificialX" / "b.csv", 400, 2),
        "realY/c.csv": _write(data / "realY" / "c.csv", 650, 3),
    }
    calls: list[tuple[int, int]] = []
    summary = run_nab(
        data, tmp_path / "out", tmp_path / "plots", progress=lambda d, t: calls.append((d, t))
    )
    assert summary["files"] == 3 and summary["rows"] == 900 + 400 + 650
    for rel, df in frames.items():
        out = pd.read_csv(tmp_path / "out" / rel)
        assert list(out.columns) == ["timestamp", "value", "anomaly_score"]
        assert len(out) == len(df)
        assert (out["timestamp"] == df["timestamp"]).all()
        assert out["anomaly_score"].between(0, 1).all()
        assert (tmp_path / "plots" / rel).with_suffix(".png").stat().st_size > 0
    assert pd.read_csv(tmp_path / "out" / "artificialX/a.csv")["anomaly_score"].max() > 0.5
    assert calls and calls[-1] == (1950, 1950)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))


def test_run_nab_matches_per_file_detector(tmp_path: Path) -> None:
    from perfintel.analysis.anomaly import AnomalyDetector

    data = tmp_path / "data"
    _write(data / "cat" / "x.csv", 500, 4, repeat=True)
    df = pd.read_csv(data / "cat" / "x.csv")
    _write(data / "cat" / "y.csv", 300, 5)
    run_nab(data, tmp_path / "out")
    got = pd.read_csv(tmp_path / "out" / "cat" / "x.csv")["anomaly_score"].to_numpy()
    ts = pd.to_datetime(df["timestamp"]).to_numpy(dtype="datetime64[ms]").astype(np.int64)
    want = AnomalyDetector().score_batch(ts, df["value"].to_numpy())
    # the CSV keeps 16 significant digits; the in-memory scores are identical (see conformance)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_run_nab_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        run_nab(tmp_path, tmp_path / "out")
