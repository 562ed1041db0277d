"""The correlation core: lags, leaders, significance under seasonality, odd inputs."""

from __future__ import annotations

import doctest

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

from perfintel.analysis import correlation
from perfintel.analysis.correlation import benjamini_hochberg, correlate, moved_with
from perfintel.analysis.signals import SeriesInput, as_matrix, remove_seasonal_profiles
from perfintel.model import label_set

DAY = 1440


def si(name: str, values: np.ndarray, counter: bool = False) -> SeriesInput:
    return SeriesInput(label_set({"__name__": name}), np.asarray(values, dtype=float), counter)


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    return np.asarray(lfilter([1.0], [1.0, -phi], rng.normal(0, sd, n)))


def test_doctests() -> None:
    assert doctest.testmod(correlation).failed == 0


def test_one_cause_leading_twenty_effects() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(DAY)
    day = np.sin(2 * np.pi * t / DAY)
    cause = 50 + 10 * day + ar1(rng, DAY, 0.9, 1.0)
    lags = rng.integers(1, 25, 20)
    series = [si("cause", cause)]
    for k, lag in enumerate(lags):
        eff = 2 * np.r_[np.full(lag, cause[0]), cause[:-lag]] + 15 * day + ar1(rng, DAY, 0.6, 2.0)
        series.append(si(f"effect{k}", eff))
    for k in range(30):
        series.append(
            si(f"noise{k}", 100 + 20 * np.sin(2 * np.pi * t / DAY + k) + ar1(rng, DAY, 0.8, 1))
        )
    res = correlate(series, step_seconds=60, max_lag=30)
    assert res.leaders[0].index == 0 and res.leaders[0].leads >= 20
    for j, lag in enumerate(lags, start=1):
        assert abs(int(res.lag[0, j]) - int(lag)) <= 1
        assert int(res.lag[j, 0]) == -int(res.lag[0, j])
    sig = res.pairs.rows(significant_only=True)
    assert {(p.a, p.b) for p in sig} >= {(0, j) for j in range(1, 21)}
    noise_pairs = [p for p in sig if p.a > 20 and p.b > 20]
    assert len(noise_pairs) <= 0.05 * len(sig) + 2  # false discoveries stay near the FDR


def test_independent_seasonal_series_are_not_correlated() -> None:
    """Two daily cycles share their shape; without de-seasonalising they correlate almost
    perfectly. Over many independent pairs the significant share stays near alpha."""
    t = np.arange(DAY)
    hits = 0
    trials = 40
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        amp = rng.uniform(5, 40)
        a = 100 + amp * np.sin(2 * np.pi * t / DAY) + ar1(rng, DAY, rng.uniform(0, 0.95), 1)
        b = 80 + amp * np.sin(2 * np.pi * t / DAY + 0.2) + ar1(rng, DAY, rng.uniform(0, 0.95), 1)
        assert np.corrcoef(a, b)[0, 1] > 0.8  # the raw values say "correlated"
        res = correlate([si("a", a), si("b", b)], step_seconds=60, max_lag=30)
        hits += int(res.pairs.significant[0])
    assert hits / trials <= 0.15


def test_significance_counts_only_the_steps_both_series_were_sampled() -> None:
    """Sixty samples at the end of a 600-step range (a host collected for an hour, read over
    ten): filled in, the rest is carried, not seen. Independent noise must not pass for
    correlated on 600 steps of evidence; a real follower over the same sixty still is."""
    rng = np.random.default_rng(8)
    fresh = np.full(600, np.nan)
    rows = []
    for _ in range(8):
        v = fresh.copy()
        v[540:] = rng.normal(0, 1, 60)
        rows.append(v)
    cause = fresh.copy()
    cause[540:] = np.cumsum(rng.normal(0, 1, 60))
    follower = np.r_[np.nan, cause[:-1]] + rng.normal(0, 0.05, 600)
    series = [si(f"noise{k}", r) for k, r in enumerate(rows)]
    series += [si("cause", cause), si("follower", follower)]
    res = correlate(series, step_seconds=60, max_lag=30)
    sig = res.pairs.rows(significant_only=True)
    assert [(p.a, p.b) for p in sig] == [(8, 9)]
    # under sixteen steps together: never significant, however close
    short = [
        si(n, np.where(np.arange(600) >= 588, v, np.nan))
        for n, v in (("a", cause), ("b", follower))
    ]
    assert not correlate(short, step_seconds=60, max_lag=5).pairs.rows(significant_only=True)


def test_weekly_windows_remove_the_daily_profile() -> None:
    x = np.tile(np.sin(2 * np.pi * np.arange(DAY) / DAY), 3)[None, :] * 10
    out = remove_seasonal_profiles(x, [DAY])
    assert np.max(np.abs(out)) < 1e-9


def test_counters_are_correlated_on_their_increases() -> None:
    rng = np.random.default_rng(1)
    rate = 100 + ar1(rng, 600, 0.5, 10)
    a = np.cumsum(rng.poisson(np.maximum(rate, 1)))
    a[300:] -= a[299]  # a restart
    b = 2 * rate + rng.normal(0, 3, 600)
    res = correlate([si("req_total", a, counter=True), si("cpu", b)], max_lag=5)
    (p,) = res.pairs.rows()
    assert p.significant and p.lag == 0 and p.pearson > 0.5 and p.spearman > 0.5


def test_moved_with_finds_the_follower_and_its_direction() -> None:
    rng = np.random.default_rng(2)
    target = np.cumsum(rng.normal(size=800))
    after = np.r_[np.zeros(4), target[:-4]] + rng.normal(0, 0.3, 800)
    before = target[4:]
    before = np.r_[before, np.zeros(4)] + rng.normal(0, 0.3, 800)
    unrelated = np.cumsum(rng.normal(size=800))
    found = moved_with(
        si("t", target), [si("after", after), si("before", before), si("u", unrelated)], max_lag=10
    )
    by_name = {dict(c.labels)["__name__"]: c for c in found}
    assert by_name["after"].significant and by_name["after"].lag == 4
    assert by_name["before"].significant and by_name["before"].lag == -4
    assert not by_name["u"].significant
    assert [c.significant for c in found] == sorted((c.significant for c in found), reverse=True)
    assert moved_with(si("flat", np.ones(800)), [si("after", after)]) == []


def test_benjamini_hochberg() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    q = benjamini_hochberg(p)
    # sorted: 0.01, 0.03, 0.04, 0.5 -> p*m/rank = 0.04, 0.06, 0.0533, 0.5 -> running min from the top
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert benjamini_hochberg(np.array([])).size == 0


series_values = st.lists(
    st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=0, max_size=120
)


@settings(max_examples=60, deadline=None)
@given(st.lists(series_values, min_size=0, max_size=6), st.integers(0, 40))
def test_any_input_gives_a_well_formed_answer(rows: list[list[float]], max_lag: int) -> None:
    n = max((len(r) for r in rows), default=0)
    series = [
        si(f"s{i}", np.r_[np.asarray(r, float), np.full(n - len(r), np.nan)])
        for i, r in enumerate(rows)
    ]
    res = correlate(series, max_lag=max_lag)
    k = len(series)
    assert res.xcorr.shape == res.lag.shape == (k, k)
    assert np.all(np.isfinite(res.xcorr)) and np.allclose(res.xcorr, res.xcorr.T)
    assert np.all((res.pairs.q_value >= 0) & (res.pairs.q_value <= 1))
    assert np.all(np.abs(res.pairs.pearson) <= 1) and np.all(np.abs(res.pairs.spearman) <= 1)
    _x, usable = as_matrix(series)
    assert not usable[[i for i, s in enumerate(series) if np.isfinite(s.values).sum() < 8]].any()
    assert {ld.index for ld in res.leaders} == set(np.flatnonzero(res.usable).tolist())
