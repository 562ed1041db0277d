"""A baseline's spread over its own wander: a slowly wandering series is no change."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.signal import lfilter

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause.baseline import wander_factor
from tests.analysis.rootcause_cases import GRID, N, T, noise, si

#: an hour of baseline (collection began an hour before the window)
KW = {"window_ms": 30 * 60_000, "baseline_ms": 60 * 60_000}


def _wander(seed: int, sd: float = 0.05, tau: float = 20.0, n: int = N) -> np.ndarray:
    """Stationary AR(1) noise of spread ``sd`` and time constant ``tau`` steps around 1."""
    phi = np.exp(-1.0 / tau)
    e = np.random.default_rng(seed).standard_normal(n) * sd * np.sqrt(1 - phi * phi)
    return np.asarray(1.0 + lfilter([1.0], [1.0, -phi], e))


def _step_beside_a_wanderer() -> list:
    """Checkout's latency steps up by 10σ at step 212; a batch queue wanders slowly (time
    constant 20 steps: an hour of baseline holds about one and a half independent points)
    and is, by the window, 10σ of its baseline's residuals from its line."""
    step = noise(1, 0.2, 0.002) + np.where(np.arange(N) >= 212, 0.02, 0.0)
    return [
        si("http_request_duration_seconds", "checkout-0", step, service="checkout"),
        si("queue_depth", "batch-0", _wander(103), service="batch"),
    ]


def _ranked(wander: float) -> list[int]:
    p = replace(RootCauseParams(), wander=wander)
    return [c.index for c in rank_root_causes(T, _step_beside_a_wanderer(), GRID, params=p, **KW)]


def test_a_slow_wanderer_over_a_short_baseline_is_no_change_with_wander() -> None:
    assert _ranked(0.0) == [1, 0]  # off: the wanderer reads as a change and ranks first
    assert _ranked(1.0) == [0]  # on: the step alone


def test_wander_factor_grows_with_autocorrelation_and_a_shorter_baseline() -> None:
    rng = np.random.default_rng(3)
    white = rng.standard_normal((1, 180))
    slow_long = _wander(4, n=180)[None, :] - 1.0
    slow_short = slow_long[:, -60:]
    w, sl, ss = (float(wander_factor(r, 40.0)[0]) for r in (white, slow_long, slow_short))
    assert 1.0 < w < 1.2  # independent points: the line is nearly certain
    assert sl > 1.3 * w  # a slow wander holds fewer independent points
    assert ss > 1.5 * sl  # and fewer still over an hour
    assert float(wander_factor(white, 0.0)[0]) < w  # the farther, the less certain
