"""Conformance suite: every forecaster passes the same checks (one contract)."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from perfintel.analysis import forecast as fc
from perfintel.analysis.forecast import (
    AutoForecaster,
    Forecaster,
    ForecastResult,
    all_models,
    fit_predict,
    season_lengths_for,
)
from perfintel.analysis.forecast import seasons as seasons_mod
from perfintel.errors import BadInputError

MODELS = all_models()
IDS = [m.name for m in MODELS]
H = 30


def seasonal_series(n: int = 24 * 21, seed: int = 0, positive: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    y = 10 * np.sin(2 * np.pi * t / 24) + 0.01 * t + rng.normal(0, 1, n)
    return y + 100 if positive else y


def check_result(r: ForecastResult, h: int, levels: tuple[int, ...] = (80, 95)) -> None:
    assert isinstance(r, ForecastResult)
    assert r.mean.shape == (h,)
    assert sorted(r.lo) == sorted(levels) == sorted(r.hi)
    for lv in levels:
        assert r.lo[lv].shape == (h,) and r.hi[lv].shape == (h,)
        assert np.all(np.isfinite(r.lo[lv])) and np.all(np.isfinite(r.hi[lv]))
        assert np.all(r.lo[lv] <= r.mean + 1e-9 * np.abs(r.mean))
        assert np.all(r.mean <= r.hi[lv] + 1e-9 * np.abs(r.mean))
    ordered = sorted(levels)
    for a, b in itertools.pairwise(ordered):
        assert np.all(r.lo[b] <= r.lo[a] + 1e-9) and np.all(r.hi[a] <= r.hi[b] + 1e-9)
    assert np.all(np.isfinite(r.mean))
    assert r.model


@pytest.fixture(params=MODELS, ids=IDS)
def model(request: pytest.FixtureRequest) -> Forecaster:
    return request.param


def test_shapes_and_order(model: Forecaster) -> None:
    r = model.fit_predict(seasonal_series(), H, season_lengths=[24])
    check_result(r, H)
    assert r.backtest is not None and r.backtest.origins >= 1
    assert 0 <= r.backtest.smape <= 200 and r.backtest.mase >= 0


def test_custom_levels(model: Forecaster) -> None:
    r = model.fit_predict(seasonal_series(), 10, season_lengths=[24], levels=(50, 99))
    check_result(r, 10, (50, 99))


def test_intervals_widen_with_lead_time(model: Forecaster) -> None:
    # positive series: bands are symmetric in logs
    r = model.fit_predict(seasonal_series(), H, season_lengths=[24])
    w = np.log(r.hi[95]) - np.log(r.lo[95])
    assert np.all(np.diff(w) >= -1e-9)
    # series with negative values: bands are symmetric in levels
    r = model.fit_predict(seasonal_series(positive=False), H, season_lengths=[24])
    w = r.hi[95] - r.lo[95]
    assert np.all(np.diff(w) >= -1e-9)


def test_nan_gaps_and_trailing_nans(model: Forecaster) -> None:
    y = seasonal_series()
    y[100:130] = np.nan
    y[5] = np.inf
    y[-3:] = np.nan
    y[:4] = np.nan
    check_result(model.fit_predict(y, H, season_lengths=[24]), H)


def test_trailing_nans_shift_the_forecast(model: Forecaster) -> None:
    # forecasting after 3 missing steps = the last 3+H forecast of the cut series, minus 3
    y = seasonal_series()
    cut = y.copy()
    cut[-3:] = np.nan
    a = model.fit_predict(cut, H, season_lengths=[24])
    b = model.fit_predict(y[:-3], H + 3, season_lengths=[24])
    np.testing.assert_allclose(a.mean, b.mean[3:], rtol=1e-9)


def test_constant_series(model: Forecaster) -> None:
    r = model.fit_predict(np.full(200, 7.5), H, season_lengths=[24])
    check_result(r, H)
    np.testing.assert_allclose(r.mean, 7.5)
    np.testing.assert_allclose(r.hi[95], 7.5)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_very_short_series_fall_back(model: Forecaster, n: int) -> None:
    r = model.fit_predict(np.arange(1.0, n + 1), H, season_lengths=[24])
    check_result(r, H)
    assert r.season_lengths == ()  # 24 needs two cycles of history
    if n <= 2:
        np.testing.assert_allclose(r.mean, float(n))


@pytest.mark.parametrize("scale", [1e-300, 1e12, 1e300])
def test_huge_and_tiny_values(model: Forecaster, scale: float) -> None:
    y = seasonal_series() * scale
    check_result(model.fit_predict(y, H, season_lengths=[24]), H)
    y = seasonal_series(positive=False) * min(scale, 1e150)
    check_result(model.fit_predict(y, H, season_lengths=[24]), H)


def test_deterministic(model: Forecaster) -> None:
    y = seasonal_series(seed=3)
    a = model.fit_predict(y, H, season_lengths=[24])
    b = model.fit_predict(y.copy(), H, season_lengths=[24])
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.hi[80], b.hi[80])


def test_input_not_modified(model: Forecaster) -> None:
    y = seasonal_series()
    y[10] = np.nan
    before = y.copy()
    model.fit_predict(y, H, season_lengths=[24])
    np.testing.assert_array_equal(y, before)


def test_no_season_and_detected_season(model: Forecaster) -> None:
    check_result(model.fit_predict(seasonal_series(), H, season_lengths=()), H)
    check_result(model.fit_predict(seasonal_series(), H), H)


def test_all_nan_is_bad_input(model: Forecaster) -> None:
    with pytest.raises(BadInputError):
        model.fit_predict(np.full(50, np.nan), H)


@pytest.mark.parametrize("h, levels", [(0, (80,)), (-1, (80,)), (5, (0,)), (5, (100,))])
def test_bad_arguments(h: int, levels: tuple[int, ...]) -> None:
    with pytest.raises(BadInputError):
        fit_predict(seasonal_series(), h, levels=levels)


def test_to_dict_is_statsforecast_shaped() -> None:
    d = fit_predict(seasonal_series(), 5, season_lengths=[24]).to_dict()
    assert list(d) == ["mean", "lo-80", "hi-80", "lo-95", "hi-95"]


def test_auto_is_accurate_and_calibrated_on_seasonal_noise() -> None:
    errs, inside80, inside95 = [], [], []
    for seed in range(12):
        y = seasonal_series(24 * 28 + 48, seed=seed)
        hist, fut = y[:-48], y[-48:]
        r = AutoForecaster().fit_predict(hist, 48, season_lengths=[24])
        errs.append(np.mean(np.abs(r.mean - fut)))
        inside80.append(np.mean((fut >= r.lo[80]) & (fut <= r.hi[80])))
        inside95.append(np.mean((fut >= r.lo[95]) & (fut <= r.hi[95])))
    assert np.mean(errs) < 1.3  # noise sd is 1: MAE of a perfect forecast is 0.8
    assert 0.65 <= np.mean(inside80) <= 0.95
    assert 0.85 <= np.mean(inside95) <= 1.0


def test_auto_follows_a_level_shift() -> None:
    y = seasonal_series(24 * 21)
    y[-72:] += 50
    r = fit_predict(y, 24, season_lengths=[24])
    assert np.mean(r.mean) > 140


def test_auto_survives_outliers() -> None:
    y = seasonal_series(24 * 21)
    clean = fit_predict(y, 24, season_lengths=[24]).mean
    y[[50, 200, 333]] = [1e6, 1e-3, 5e5]
    spiky = fit_predict(y, 24, season_lengths=[24]).mean
    assert np.max(np.abs(spiky - clean)) < 5


def test_season_lengths_for() -> None:
    assert season_lengths_for(3600, 700) == [24, 168]
    assert season_lengths_for(3600, 100) == [24]
    assert season_lengths_for(3600, 30) == []
    assert season_lengths_for(60, 10_080) == [1440]
    assert season_lengths_for(0, 100) == []


def test_detect_season_lengths() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(24 * 7 * 4)
    daily = np.sin(2 * np.pi * t / 24) + 0.3 * rng.normal(size=t.size)
    assert fc.detect_season_lengths(daily) == [24]
    weekly = daily + 1.5 * (t % 168 >= 120)
    assert fc.detect_season_lengths(weekly) == [24, 168]
    assert fc.detect_season_lengths(rng.normal(size=500)) == []
    assert fc.detect_season_lengths(np.cumsum(rng.normal(size=500))) == []
    assert fc.detect_season_lengths(np.arange(3.0)) == []


def test_doctests() -> None:
    for mod in (fc, seasons_mod):
        res = doctest.testmod(mod)
        assert res.failed == 0 and res.attempted > 0


def test_nonnegative_series_stay_nonnegative(model: Forecaster) -> None:
    rng = np.random.default_rng(5)
    y = np.maximum(0.0, rng.normal(0.5, 1.0, 24 * 14))  # many exact zeros
    r = model.fit_predict(y, H, season_lengths=[24])
    check_result(r, H)
    assert np.all(r.lo[95] >= 0) and np.all(r.mean >= 0)
