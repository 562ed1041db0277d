"""A series that was constant: the resolution of a value, the run before a change, and
the words and severity of the change (``steps.resolution``, ``flat.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfintel.analysis.anomaly import AnomalyDetector
from perfintel.analysis.anomaly.flat import constant_run, describe
from perfintel.analysis.anomaly.steps import resolution, resolution_spread, series_grid

MIN = 60_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000


@pytest.mark.parametrize(
    ("value", "step"),
    [
        (0.0, 1.0),
        (1.0, 1.0),
        (-3.0, 1.0),
        (1001.0, 1.0),
        (0.25, 0.01),
        (-7.5, 0.1),
        (0.1 + 0.2, 0.1),  # 0.30000000000000004: the float of a decimal, not a finer grid
        (2.5e-7, 1e-8),
        (12345678.0, 100.0),  # no finer than the 6th significant digit
        (0.123456789, 1e-6),
        (math.nan, 1.0),
        (math.inf, 1.0),
    ],
)
def test_resolution_is_the_coarsest_decimal_grid_of_the_value(value: float, step: float) -> None:
    assert resolution(value) == pytest.approx(step, rel=1e-12)
    assert resolution_spread(value) == pytest.approx(step / math.sqrt(12), rel=1e-12)


def test_constant_run_is_the_run_of_equal_samples_before_the_change() -> None:
    ts = T0 + MIN * np.arange(80, dtype=np.int64)
    x = np.r_[[5.0], np.zeros(40), np.ones(3), np.zeros(36)]
    run = constant_run(ts, x, 41)
    assert run is not None
    assert (run.start_ms, run.end_ms, run.value, run.count) == (ts[1], ts[41], 0.0, 40)
    assert not run.from_first
    assert constant_run(ts, x, 44) is None  # three samples at 1: too short to be "constant"
    assert constant_run(ts, x, 1) is None
    first = constant_run(ts[:30], np.zeros(30), 30)
    assert first is not None and first.from_first and first.end_ms == ts[29]


def test_describe_says_from_what_to_what_since_when_in_steps_of_the_resolution() -> None:
    ts = T0 + MIN * np.arange(2 * 1440 + 1, dtype=np.int64)
    x = np.r_[[7.0], np.zeros(2 * 1440 - 1), [0.5]]
    run = constant_run(ts, x, len(x) - 1)
    text = describe(0.5, 0.0, run, 0.1)
    assert text.startswith("constant at 0 for 1d23h59m (since ")
    assert "UTC), now 0.5: a change of +0.5 (5 steps of its resolution 0.1)" in text
    assert describe(2.0, 1.0, None, 1.0).startswith("expected 1 of a series that had barely moved")
    assert describe(0.0, 0.5, run, 0.1).startswith(
        "expected 0.5 of a series"
    )  # not "a change of +0"
    # a byte counter stuck at 1.2e12 that moves by one block: below its 6-digit resolution
    big = describe(1_234_567_894_219.0, 1_234_567_890_123.0, None, 1e7)
    assert big.endswith("a change of +4096 (less than its resolution 1.000e+07)")


def test_a_detector_grades_a_change_from_constant_by_its_size() -> None:
    """Through the public detector: 0 for a day, then a step of 1 or of 10."""
    severities = {}
    for step in (1.0, 10.0):
        det = AnomalyDetector()
        for i in range(1440):
            det.update(T0 + i * MIN, 0.0)
        r = det.update_result(T0 + 1440 * MIN, step)
        assert r.is_anomaly and r.yhat == 0.0
        assert r.anomaly_score == pytest.approx(step * math.sqrt(12) / 3)
        assert "×" not in r.explanation and r.explanation.startswith("expected 0 of a series")
        severities[step] = r.severity
    assert severities == {1.0: "low", 10.0: "critical"}


@pytest.mark.parametrize("to", [0.0, 1.0])
def test_a_float_series_that_reaches_a_whole_number_keeps_its_own_spread(to: float) -> None:
    # 0 and 1 lie on every coarse grid: a utilisation of 0.5 that drops to exactly 0 (an
    # outage) or pegs at exactly 1 (saturation) is a float series, not a count, and its band
    # is its learnt spread (a floor read from the value alone scored these ~1: missed)
    rng = np.random.default_rng(1)
    det = AnomalyDetector()
    for i in range(1440):
        det.update(T0 + i * MIN, float(0.5 + 0.02 * rng.standard_normal()))
    r = det.update_result(T0 + 1440 * MIN, to)
    assert r.is_anomaly and r.severity == "critical" and r.anomaly_score > 5
    assert "× the usual spread" in r.explanation


def test_the_series_grid_is_the_finest_of_its_values_zeros_telling_nothing() -> None:
    # the shortcuts of ``series_grid`` give exactly min(grid, resolution(x))
    rng = np.random.default_rng(4)
    edges = [10.0**k * f for k in range(-9, 12) for f in (1 - 1e-9, 1.0, 1 + 1e-9, 1.00001)]
    values = np.r_[
        np.arange(-5.0, 50.0),
        rng.normal(0, 1, 200) * 10.0 ** rng.integers(-8, 12, 200),
        [
            round(float(v), int(d))
            for v, d in zip(rng.uniform(0, 100, 100), rng.integers(0, 5, 100), strict=True)
        ],
        edges,
        [-x for x in edges],
    ]
    for grid in [10.0**k for k in range(-13, 9)]:
        for x in values:
            if x != 0:
                assert series_grid(grid, x) == min(grid, resolution(x)), (grid, x)
    assert series_grid(0.0, 0.0) == 0.0 and series_grid(0.01, 0.0) == 0.01
    assert series_grid(0.0, 3.0) == 1.0 and series_grid(0.0, 0.25) == 0.01


@pytest.mark.parametrize(
    ("kind", "grid"), [("zeros", 1.0), ("counts", 1.0), ("floats", 1e-6), ("cents", 0.01)]
)
def test_the_detector_keeps_its_series_grid(kind: str, grid: float) -> None:
    """The grid a detector's band is floored at is the series': a count's expected value
    (an average) is off its grid, and a float series may reach exactly 0 or 1."""
    rng = np.random.default_rng(2)
    x = {
        "zeros": np.zeros(500),
        "counts": rng.poisson(3.0, 500).astype(float),
        "floats": 0.5 + 0.02 * rng.standard_normal(500),
        "cents": np.round(0.5 + 0.02 * rng.standard_normal(500), 2),
    }[kind]
    x[-2:] = [0.0, 1.0]
    det = AnomalyDetector()
    ts = T0 + MIN * np.arange(500, dtype=np.int64)
    out = det.run_batch_full(ts[:-1], x[:-1])
    assert (out["grid"][100:] == grid).all()
    kept = det.model.field(det._st, "s.grid")
    assert kept[0] == (0.0 if kind == "zeros" else grid)  # 0: no value but 0 seen yet
    assert det.run_batch_full(ts[-1:], x[-1:])["grid"][0] == grid
    assert kept[0] == grid
