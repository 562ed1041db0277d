"""The impact of a change (a deploy, a configuration change) on a metric, with an honest interval.

Arrays in, a :class:`ChangeImpact` out. The counterfactual — what the metric
would have done without the change — is perfintel's own automatic forecaster
(:func:`perfintel.analysis.forecast.fit_predict`, daily and weekly seasons
from the step) fitted on the history *before* the change and run over the
``after`` window. The effect is the mean of what happened minus the mean of
the counterfactual over that window (also relative to the counterfactual).

The interval
------------
The estimate's error is the forecaster's error averaged over the window, and
forecast errors are autocorrelated: they drift together for many steps, so
``sigma / sqrt(after)`` would be far too narrow. Instead the same procedure is
run where nothing changed: from ``calibration`` origins before the change
(each ``after`` steps before the next, every fit on the history before its
own origin), the *pseudo-effect* "mean observed minus mean forecast" over the
following ``after`` steps is recorded. Under no change these are draws of the
estimate's error (the same model, horizon and series; slightly pessimistic,
as earlier origins fit on less history). The interval at ``level`` is the
effect ± the split-conformal quantile of their absolute values (the
``ceil(level (k + 1))``-th smallest of ``k``), which covers the true effect
with probability at least ``level`` when the errors are exchangeable;
*significant* means the interval excludes zero, so on a change without effect
it is called significant with probability at most ``1 - level``. The p-value
is the rank of ``|effect|`` among the pseudo-effects.

With fewer pseudo-effects than the level needs (``ceil(level (k + 1)) > k``:
a short history), the half-width falls back to the mean over the window of
the forecaster's own per-step interval half-widths at ``level`` — the width
the mean would have if its errors moved in lockstep, the conservative end of
autocorrelation — and ``method`` says ``"forecast"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perfintel.errors import BadInputError

from .forecast import ForecastResult, fit_predict
from .forecast.seasons import season_lengths_for
from .signals import per_step_increase

#: pseudo-effects used for the interval (at most; fewer when the history is short)
CALIBRATION = 19
#: fewest steps of history before the earliest calibration origin
MIN_HISTORY = 48


@dataclass(frozen=True)
class ChangeImpact:
    """The effect of a change on one series over ``after`` steps.

    ``effect`` is ``observed - expected`` (means over the window, in the
    series' units — for a counter, its increase per step); ``lower``/``upper``
    bound it at ``level``; ``relative*`` are the same divided by ``expected``
    (``None`` when it is not positive). ``counterfactual`` holds the
    forecast over the window, one value per step. ``method`` is
    ``"conformal"`` (from ``calibration`` pseudo-effects) or ``"forecast"``.
    """

    change_index: int
    after: int
    observed: float
    expected: float
    effect: float
    lower: float
    upper: float
    relative: float | None
    relative_lower: float | None
    relative_upper: float | None
    level: float
    significant: bool
    p_value: float
    method: str
    calibration: int
    model: str
    counterfactual: np.ndarray


def _mean(v: np.ndarray) -> float:
    ok = np.isfinite(v)
    return float(np.mean(v[ok])) if ok.any() else math.nan


def _forecast(y: np.ndarray, h: int, seasons: Sequence[int] | None, level: float) -> ForecastResult:
    return fit_predict(y, h, season_lengths=seasons, levels=(_percent(level),))


def _percent(level: float) -> int:
    return min(99, max(1, round(level * 100)))


def _pseudo_effects(
    y: np.ndarray, change: int, after: int, seasons: Sequence[int] | None, count: int
) -> list[float]:
    out: list[float] = []
    origin = change - after
    while len(out) < count and origin >= MIN_HISTORY:
        actual = y[origin : origin + after]
        if np.isfinite(actual).sum() >= max(1, after // 2) and np.isfinite(y[:origin]).sum() >= 8:
            fc = _forecast(y[:origin], after, seasons, 0.8).mean
            out.append(_mean(actual) - float(np.mean(fc[np.isfinite(actual)])))
        origin -= after
    return out


def assess_change(
    values: np.ndarray,
    change_index: int,
    after: int,
    *,
    step_seconds: float | None = None,
    level: float = 0.9,
    counter: bool = False,
    calibration: int = CALIBRATION,
    season_lengths: Sequence[int] | None = None,
) -> ChangeImpact:
    """The effect of a change at ``values[change_index]`` over the next ``after`` steps.

    ``values`` is one series on a regular grid (NaN = no sample), the
    history before ``change_index`` is what the counterfactual is fitted on.
    ``counter=True`` analyses the increase per step. Seasons come from
    ``step_seconds`` (daily, weekly) unless ``season_lengths`` is given.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = 100 + 10 * np.sin(np.arange(3000) * 2 * np.pi / 288) + rng.normal(0, 1, 3000)
    >>> y[2800:] += 5
    >>> r = assess_change(y, 2800, 48, step_seconds=300)
    >>> r.significant, round(r.effect), r.lower < 5 < r.upper
    (True, 5, True)
    """
    if not 0 < level < 1:
        raise BadInputError(f"invalid parameter 'level': must be in (0, 1), got {level}")
    if after < 1:
        raise BadInputError("invalid parameter 'after': at least one step after the change")
    y = np.asarray(values, dtype=np.float64)
    if counter:
        y = per_step_increase(y)
    if not 0 < change_index < y.size:
        raise BadInputError("the change is not inside the series")
    history = y[:change_index]
    post = y[change_index : change_index + after]
    if np.isfinite(history).sum() < 8:
        raise BadInputError("too little history before the change (at least 8 samples)")
    if not np.isfinite(post).any():
        raise BadInputError("no data after the change")
    seasons = season_lengths
    if seasons is None and step_seconds:
        seasons = season_lengths_for(step_seconds, int(np.isfinite(history).sum()))
    res = _forecast(history, after, seasons, level)
    fc = res.mean
    seen = np.isfinite(post)
    observed = _mean(post)
    expected = float(np.mean(fc[: post.size][seen]))
    effect = observed - expected
    pseudo = np.abs(np.asarray(_pseudo_effects(y, change_index, after, seasons, calibration)))
    k = pseudo.size
    rank = math.ceil(level * (k + 1))
    if k and rank <= k:
        half = float(np.sort(pseudo)[rank - 1])
        method = "conformal"
        p_value = (1 + int(np.sum(pseudo >= abs(effect)))) / (k + 1)
    else:
        from scipy.stats import norm

        pct = _percent(level)
        half = float(np.mean((res.hi[pct] - res.lo[pct])[: post.size][seen]) / 2)
        method = "forecast"
        z = norm.ppf(0.5 + level / 2) * abs(effect) / half if half > 0 else math.inf
        p_value = float(2 * norm.sf(z))
    lower, upper = effect - half, effect + half
    rel = rel_lo = rel_hi = None
    if expected > 0:
        rel, rel_lo, rel_hi = effect / expected, lower / expected, upper / expected
    return ChangeImpact(
        change_index,
        int(post.size),
        observed,
        expected,
        effect,
        lower,
        upper,
        rel,
        rel_lo,
        rel_hi,
        level,
        bool(lower > 0 or upper < 0),
        float(p_value),
        method,
        k,
        res.model,
        fc[: post.size],
    )


def annotation_changes(
    timestamps: np.ndarray, values: np.ndarray, *, starts_change: bool
) -> list[int]:
    """Times (ms) at which an annotation series records a change.

    A change is a sample whose value differs from the previous one — a
    counter such as ``changes_total`` incrementing, a version gauge moving —
    and, with ``starts_change``, the series' first sample (an info metric such
    as ``deploy_info{version="2.5.0"}`` appears when that version is deployed).
    NaN samples are ignored.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    ts, v = ts[ok], v[ok]
    if ts.size == 0:
        return []
    out = [int(t) for t in ts[1:][v[1:] != v[:-1]]]
    if starts_change:
        out.insert(0, int(ts[0]))
    return out


def group_changes(times: Sequence[int], gap_ms: int) -> list[int]:
    """Changes closer than ``gap_ms`` to the previous one merged into their first
    (a rolling deploy restarts instances one after another: one change)."""
    out: list[int] = []
    previous: int | None = None
    for t in sorted(times):
        if previous is None or t - previous > gap_ms:
            out.append(t)
        previous = t
    return out
