"""Outliers among peers: the pure scorer (window and online forms)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from perfintel.analysis.outliers import (
    PeerScores,
    explain,
    nan_median,
    peer_deviation,
    score_window,
)
from perfintel.errors import BadInputError


def group(n: int = 30, steps: int = 120, seed: int = 0) -> np.ndarray:
    """A shared daily-ish pattern, a small member factor and Gaussian noise."""
    rng = np.random.default_rng(seed)
    pattern = 100 + 40 * np.sin(np.arange(steps) / 15)
    return (1 + rng.normal(0, 0.01, n))[:, None] * pattern + rng.normal(0, 2, (n, steps))


def test_level_shape_and_noise_deviants_are_flagged_and_peers_are_not() -> None:
    v = group()
    v[3] += 20  # level: ten noise spreads
    v[7] = 100 + 40 * np.sin(np.arange(120) / 15 + 2.0)  # another shape
    v[11] += np.random.default_rng(9).normal(0, 12, 120)  # six times the noise
    w = score_window(v)
    assert set(np.flatnonzero(w.flagged)) == {3, 7, 11}
    assert w.score[3] > 0.9 and w.deviation[3] > 3
    assert np.all(w.score[[i for i in range(30) if i not in (3, 7, 11)]] < 0.1)
    # the group's centre and spread follow the healthy members, not the deviants
    assert np.allclose(w.median, np.median(np.delete(v, [3, 7, 11], axis=0), axis=0), atol=1.5)


def test_shared_seasonality_trends_and_incidents_cancel() -> None:
    v = group(seed=1)
    v[:, 60:70] += 300  # an incident of the whole group is nobody's outlier
    v = v * np.linspace(1, 3, 120)  # a shared trend, growing spread with it
    assert not score_window(v).flagged.any()


def test_scale_invariance() -> None:
    v = group(seed=2)
    v[5] += 15
    base = score_window(v)
    for a, b in ((1e6, 0.0), (1e-6, 5.0), (-3.0, 1e9)):
        w = score_window(a * v + b)
        assert np.array_equal(w.flagged, base.flagged)
        assert np.allclose(w.score, base.score)


def test_missing_points_and_small_groups() -> None:
    v = group(n=5, steps=40, seed=3)
    v[0, ::2] = np.nan
    v[:3, 10:20] = np.nan  # only two members report: no peers to compare with
    v[4] += 50
    median, _, z = peer_deviation(v)
    assert np.all(np.isnan(median[10:20])) and np.all(np.isnan(z[:, 10:20]))
    w = score_window(v)
    assert w.flagged[4] and not w.flagged[:4].any()
    assert w.steps[0] == 15 and w.steps[4] == 30
    lone = score_window(np.ones((2, 10)))
    assert np.all(np.isnan(lone.score)) and not lone.flagged.any()
    assert "no peers" in explain("x", float("nan"), float("nan"), False, 0.2, "1h")


def test_members_that_agree_exactly_make_any_difference_an_outlier() -> None:
    v = np.zeros((10, 20))
    v[6] = 1.0  # MAD 0 and mean absolute deviation 0.1: one member idles, one works
    w = score_window(v)
    assert list(np.flatnonzero(w.flagged)) == [6]
    assert not score_window(np.full((10, 20), 7.0)).flagged.any()


def test_nan_median_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    for shape in ((5, 7), (3, 4, 6), (1, 9, 1), (4, 1)):
        a = rng.normal(size=shape)
        a[rng.random(shape) < 0.3] = np.nan
        for axis in range(len(shape)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = np.nanmedian(a, axis=axis)
            assert np.allclose(nan_median(a, axis), want, equal_nan=True)


def test_online_scores_follow_a_window_and_flag_like_the_batch_form() -> None:
    v = group(n=20, steps=200, seed=5)
    v[2, 100:] += 30  # deviates from step 100 on
    scores = PeerScores(groups=1, members=20, window_steps=20)
    shares = []
    for t in range(200):
        share, z = scores.update(v[None, :, t])
        shares.append(share[0])
        assert np.isfinite(z).all()
    shares_arr = np.array(shares)
    assert not scores.flagged(shares_arr[:100]).any()
    first = int(np.argmax(scores.flagged(shares_arr[:, 2])))
    assert 100 < first <= 106  # about pct x window steps after the change
    assert scores.flagged(shares_arr[-1]).sum() == 1


def test_online_groups_of_different_sizes_and_missing_members() -> None:
    rng = np.random.default_rng(6)
    scores = PeerScores(window_steps=10)
    for _ in range(30):
        m = np.full((3, 25), np.nan)
        m[0, :25] = rng.normal(0, 1, 25)
        m[1, :5] = rng.normal(0, 1, 5)
        m[1, 4] += 50  # the only deviant
        m[2, :2] = 1.0  # two members: never scored
        share, _ = scores.update(m)
    assert np.isnan(share[2]).all() and np.isnan(share[1, 5:]).all()
    assert scores.flagged(share)[1, 4] and scores.flagged(share).sum() == 1


def test_bad_input() -> None:
    with pytest.raises(BadInputError):
        score_window(np.ones(5))
    with pytest.raises(BadInputError):
        score_window(np.ones((3, 3)), tolerance=0)
    with pytest.raises(BadInputError):
        score_window(np.ones((3, 3)), pct=1.0)
    with pytest.raises(BadInputError):
        PeerScores(window_steps=0.5)
    with pytest.raises(BadInputError):
        PeerScores().update(np.ones(4))
