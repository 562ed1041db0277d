"""User-facing outputs: expected value, band, anomaly_score and the explanation."""

from __future__ import annotations

import math

import numpy as np

from perfintel.analysis.anomaly import AnomalyDetector, AnomalyResult, OnlineRunner
from perfintel.analysis.anomaly.result import severity_of

HOUR = 3_600_000
T0 = 1_401_062_400_000  # Monday 2014-05-26 00:00 UTC


def _weekday_series(days: int = 21, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(days * 24, dtype=np.int64) * HOUR
    hour = (ts // HOUR) % 24
    v = 50 + 20 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 1, len(ts))
    return ts, v


def test_spike_is_explained() -> None:
    ts, v = _weekday_series()
    det = AnomalyDetector()
    results = [det.update_result(int(t), float(x)) for t, x in zip(ts, v, strict=True)]
    assert all(isinstance(r, AnomalyResult) for r in results)
    late = results[-24 * 3 :]
    # ordinary data: the value sits inside the band most of the time
    inside = [r.yhat_lower <= r.value <= r.yhat_upper for r in late]
    assert sum(inside) / len(inside) > 0.9
    spike_ts = int(ts[-1] + HOUR)  # a Monday hour after three weeks
    r = det.update_result(spike_ts, 400.0)
    assert r.is_anomaly
    assert r.anomaly_score > 1.0 and r.value > r.yhat_upper
    assert r.detector in {"seasonal", "shift", "novelty"}
    assert r.severity in {"high", "critical"}
    assert "value 400" in r.explanation
    assert "usual spread above the expected" in r.explanation
    assert (
        "Monday" in r.explanation
        or "given the recent level" in r.explanation
        or ":00" in r.explanation
    )


def test_ordinary_point_has_no_explanation_and_nan_is_quiet() -> None:
    ts, v = _weekday_series(days=3)
    det = AnomalyDetector()
    for t, x in zip(ts, v, strict=True):
        det.update(int(t), float(x))
    r = det.update_result(int(ts[-1] + HOUR), float(v[-24]))
    assert not r.is_anomaly and r.explanation == "" and r.severity == "none"
    assert 0.0 <= r.anomaly_score < 1.0
    n = det.update_result(int(ts[-1] + 2 * HOUR), float("nan"))
    assert n.score == 0.0 and not n.is_anomaly and math.isnan(n.yhat)


def test_anomaly_score_is_band_relative() -> None:
    ts, v = _weekday_series(days=5)
    runner = OnlineRunner()
    full = runner.update_many_full(np.zeros(len(ts), dtype=np.int64), ts, v)
    half = (full["yhat_upper"] - full["yhat_lower"]) / 2
    dev = np.abs(v - full["yhat"])
    ok = (half > 0) & (np.arange(len(ts)) >= 10)  # anomaly_score is 0 during the warm-up
    np.testing.assert_allclose(full["anomaly_score"][ok], dev[ok] / half[ok], rtol=1e-9)


def test_severity_scale() -> None:
    assert severity_of(0.1, 0.5) == "none"
    assert severity_of(0.6, 0.5) == "low"
    assert severity_of(0.95, 1.2) == "high"
    assert severity_of(0.95, 9.0) == "critical"
