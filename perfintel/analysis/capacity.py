"""Capacity planning: when does usage reach capacity, and how much capacity is needed?

Pure functions: timestamps, usage values and a capacity in, a
:class:`CapacityReport` out. Long horizons are meant to run on downsampled data
(hourly for months ahead): any regular step works, and irregular timestamps are
resampled onto their median step.

The projection
--------------
The usage history is first classified:

* **sawtooth** — usage that fills up and is cut back by periodic clean-ups (log
  rotation, retention jobs). Clean-ups are the large one-step drops; the model
  is a ramp that restarts at every clean-up: the level right after each
  clean-up (the *trough*) follows a linear trend, the usage then grows at the
  *fill rate* (per-cycle slopes) until the next clean-up, which comes one
  median cycle after the previous one. The peaks (trough + fill rate × cycle)
  are the envelope that meets the capacity.
* **trend** — everything else: seasonal profiles (daily, weekly when the history
  holds two cycles and their seasonal strength shows them) plus a linear trend
  fitted to the deseasonalised usage (the mean of differences a quarter of
  the history apart, leaving out those across a detected one-time level
  shift, so the shift does not pass for growth, and outlying ones), anchored
  on the recent level (after the shift, if one was found). A jump counts as a
  one-time shift only when no other jump of comparable size is in the
  history; repeated large jumps are growth that comes in steps, and their
  mean increment is the growth rate.

Uncertainty comes from simulated sample paths (``paths`` of them, seeded):
the growth varies as much as slopes fitted on windows of the history do (trend
model: a random walk added to the growth plus the slope's estimation error;
sawtooth: the fill rate drawn from the per-cycle rates and the trough trend
from its standard error), the current level and seasonal profile by their
estimation error, and short-term noise is block-bootstrapped from the
residuals. A path *exhausts*
the capacity at its first step at or above it. The P10/P50/P90 exhaustion
times are quantiles over paths; ``None`` means "not within the horizon".
With ``projection=True`` the baseline's paths, sampled at up to 300 future steps
and reduced to P10/P50/P90 per step (:mod:`perfintel.analysis.capacity_projection`),
are the report's ``projection``: what a chart of the plan draws. Off by default
(``projection`` is then ``None``): only a chart needs it, and sampling the paths
draws nothing from the random generator, so every other figure of the report is
the same with and without it.

Scenarios
---------
A :class:`Scenario` multiplies the projection, for every path and step::

    usage(t) = level × (now + growth × trend(t) + seasonal/ramp shape(t) + noise(t))

``growth`` multiplies the growth part only (trend model: the slope; sawtooth:
the trough trend and the fill rate), so ``growth=1.3`` is "30 % faster
growth"; ``level`` multiplies the whole projected usage, so ``level=1.3`` is
"30 % more of everything from now on" (e.g. 30 % more users). Every scenario
scales the same random draws (common random numbers): scenarios differ by what
they change, not by the luck of their own draws.

The capacity needed is the 90th percentile over paths of each path's highest
usage within the horizon, divided by the target utilisation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from perfintel.analysis.capacity_projection import ProjectionSampler, UsageProjection
from perfintel.analysis.forecast.decompose import align_back, profile, tile
from perfintel.analysis.forecast.seasons import season_lengths_for
from perfintel.errors import BadInputError

DAY = 86_400.0
#: number of simulated sample paths and the default seed
PATHS = 400
SEED = 0
#: a season is used when its seasonal strength exceeds this
SEASON_STRENGTH = 0.4
#: a one-time level shift must stand out this many robust sigmas
SHIFT_MADS = 8.0
#: ... and no other jump be this large a fraction of it (else: growth in steps)
SHIFT_OTHER = 1 / 3
#: lag differences this many robust sigmas from their median are left out of the slope
PAIR_MADS = 3.0
#: a projection further ahead than the history reaches back, from less history than this
#: (days), is an extrapolation of too little data: under half a day a rise may be the daily
#: cycle's upswing (twenty minutes of a new host's memory do not say it fills up in a day)
SHORT_HISTORY_DAYS = 0.5
#: a drop is a clean-up when larger than this many robust sigmas of the steps ...
RESET_SIGMAS = 6.0
#: ... and than this fraction of the usage range
RESET_FRACTION = 0.05


@dataclass(frozen=True)
class Scenario:
    """A what-if: ``growth`` multiplies the growth, ``level`` all projected usage."""

    name: str = "baseline"
    growth: float = 1.0
    level: float = 1.0


DEFAULT_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(),
    Scenario("growth +30%", growth=1.3),
    Scenario("level +30%", level=1.3),
)


@dataclass(frozen=True)
class ScenarioResult:
    """Exhaustion times (P10/P50/P90, same kind as the input timestamps, ``None`` =
    not within the horizon) and the capacity needed under the target utilisation."""

    scenario: Scenario
    p10: float | np.datetime64 | None
    p50: float | np.datetime64 | None
    p90: float | np.datetime64 | None
    days_p10: float | None
    days_p50: float | None
    days_p90: float | None
    probability: float
    capacity_needed: float
    sentence: str


@dataclass(frozen=True)
class ProjectionBacktest:
    """The projection of the history's last ``days`` from the data before them.

    ``smape`` (percent) compares the median path with what happened; ``coverage``
    is the fraction of those points inside the 80 % band of the paths.
    """

    days: float
    smape: float
    coverage: float


@dataclass(frozen=True)
class CapacityReport:
    scenarios: tuple[ScenarioResult, ...]
    model: str
    step_seconds: float
    horizon_days: float
    utilisation_now: float
    backtest: ProjectionBacktest | None
    #: how far back the usage history reaches (days)
    history_days: float = math.inf
    #: the baseline scenario's simulated usage, P10/P50/P90 at up to 300 future steps
    #: (``None`` unless ``plan_capacity(..., projection=True)``)
    projection: UsageProjection | None = None

    @property
    def baseline(self) -> ScenarioResult:
        return self.scenarios[0]

    @property
    def short_history(self) -> bool:
        """Whether the usage history is under ``SHORT_HISTORY_DAYS``: too little to plan on,
        whether or not its P50 exhausts (a chart of it says so)."""
        return self.history_days < SHORT_HISTORY_DAYS

    @property
    def beyond_history(self) -> bool:
        """Whether the baseline's P50 exhaustion is an extrapolation of too little history:
        further ahead than a history of under ``SHORT_HISTORY_DAYS`` reaches back."""
        return _beyond(self.baseline.days_p50, self.history_days)

    @property
    def summary(self) -> str:
        return self.baseline.sentence


# -- input handling ---------------------------------------------------------


def _to_seconds(timestamps: np.ndarray) -> tuple[np.ndarray, bool]:
    ts = np.asarray(timestamps)
    if np.issubdtype(ts.dtype, np.datetime64):
        return ts.astype("datetime64[ns]").astype(np.int64) / 1e9, True
    return ts.astype(np.float64), False


def regularise(
    seconds: np.ndarray, values: np.ndarray, step: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Sort, drop non-finite values and interpolate onto a regular grid of ``step``."""
    ok = np.isfinite(seconds) & np.isfinite(values)
    t, v = seconds[ok], values[ok]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if t.size < 2:
        raise BadInputError("capacity planning needs at least two usage samples")
    if step is None:
        d = np.diff(t)
        d = d[d > 0]
        if d.size == 0:
            raise BadInputError("usage timestamps are all equal")
        step = float(np.median(d))
    n = int(np.floor((t[-1] - t[0]) / step + 1e-9)) + 1
    grid = t[-1] - step * np.arange(n - 1, -1, -1)
    return grid, np.interp(grid, t, v), step


# -- models -----------------------------------------------------------------


@dataclass(frozen=True)
class _Trend:
    now: float
    slope: float
    slope_sd: float
    walk_sd: float
    seasons: tuple[np.ndarray, ...]
    resid: np.ndarray
    block: int
    level_sd: float


@dataclass(frozen=True)
class _Sawtooth:
    last: float
    since_reset: int
    period: int
    trough_a: float
    trough_b: float
    trough_b_sd: float
    rates: np.ndarray
    rate_sd: float
    resid: np.ndarray
    n: int
    shape: np.ndarray  # mean deviation from the ramp by position in the cycle


def _clip_mad(r: np.ndarray, k: float = 4.0) -> np.ndarray:
    """Centre on the median and clip at ``k`` robust sigmas (jumps are not noise)."""
    r = r - np.median(r)
    sigma = 1.4826 * float(np.median(np.abs(r)))
    return np.clip(r, -k * sigma, k * sigma) if sigma > 0 else r


def _ols(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    tc = t - t.mean()
    den = float(np.sum(tc * tc))
    b = float(np.sum(tc * (y - y.mean())) / den) if den > 0 else 0.0
    return float(y.mean() - b * t.mean()), b


def _level_shift(d: np.ndarray, w: int) -> int | None:
    """Index where a one-time level shift starts, if one stands out.

    Scans the difference between the means of the ``w`` points after and
    before every position; a shift is reported when the largest difference is
    more than ``SHIFT_MADS`` robust sigmas away from the typical one (growth
    in many small steps spreads these differences instead of producing one
    outlier) and it stands alone: when another position more than ``w`` away
    holds a jump of at least ``SHIFT_OTHER`` times its size that is itself
    clear of the noise (``SHIFT_MADS / 2`` robust sigmas), the jumps are growth
    that comes in large steps, and leaving the largest out of the slope would
    understate the growth.
    """
    n = d.size
    if n < 4 * w:
        return None
    c = np.concatenate([[0.0], np.cumsum(d)])
    t = np.arange(w, n - w + 1)
    diff = (c[t + w] - c[t]) / w - (c[t] - c[t - w]) / w
    dev = diff - np.median(diff)
    sigma = 1.4826 * float(np.median(np.abs(dev)))
    k = int(np.argmax(np.abs(dev)))
    if not (sigma > 0 and abs(dev[k]) > SHIFT_MADS * sigma):
        return None
    others = np.abs(dev[np.abs(t - t[k]) > w])
    if np.any((others > SHIFT_OTHER * abs(dev[k])) & (others > SHIFT_MADS / 2 * sigma)):
        return None
    return int(t[k])


def _robust_slope(d: np.ndarray, m: int, shift: int | None) -> float:
    """Mean of ``(d[t + L] - d[t]) / L`` with ``L`` a quarter of the history.

    Pairs that straddle a detected one-time level shift are left out, so the
    shift does not pass for growth; growth in many small steps stays inside
    nearly every pair. Of the rest, those more than ``PAIR_MADS`` robust
    sigmas from their median (an undetected shift, a burst) are left out too,
    and the slope is the *mean* of what remains, not the median: growth in
    random steps makes the differences right-skewed (a few windows catch more
    steps than average), so their median understates the growth rate, while
    their mean is an unbiased estimate of the drift of a process with
    independent increments.
    """
    lag = max(m, d.size // 4, 1)
    if d.size <= lag:
        return _ols(np.arange(d.size, dtype=np.float64), d)[1]
    pairs = d[lag:] - d[:-lag]
    if shift is not None:
        start = np.arange(pairs.size)
        keep = ~((start < shift) & (start + lag >= shift))
        if keep.sum() >= max(8, pairs.size // 4):
            pairs = pairs[keep]
    dev = pairs - np.median(pairs)
    sigma = 1.4826 * float(np.median(np.abs(dev)))
    if sigma > 0:
        pairs = pairs[np.abs(dev) <= PAIR_MADS * sigma]
    return float(np.mean(pairs) / lag)


def _slope_variability(
    d: np.ndarray, horizon: int, slope: float, shift: int | None
) -> tuple[float, float]:
    """``(sd of the fitted slope, sd per step of a random-walk growth component)``.

    Slopes are fitted on overlapping windows of length ``W`` (a sixth of the
    history or the horizon, whichever is shorter; stride a quarter window) and
    their spread ``s`` is taken robustly (MAD), so one level shift does not
    widen every projection. Growth that varies (e.g. comes in steps) is read
    as a random walk whose increments have variance ``s^2 W`` — its spread
    grows with the square root of the lead time, as a sum of random steps
    does — and the slope fitted on all ``n`` points is uncertain by
    ``s sqrt(W / n)``, combined with how far the latest window's slope is from
    ``slope`` (growth that changed recently makes the projection less sure;
    left out when that window holds the detected level shift).
    """
    n = d.size
    w = int(min(max(horizon, 8), n // 6))
    if w < 4:
        return 0.0, 0.0
    t = np.arange(w, dtype=np.float64)
    tc = (t - t.mean()) / float(np.sum((t - t.mean()) ** 2))
    starts = np.arange(n - w, -1, -max(1, w // 4))
    if starts.size < 3:
        return 0.0, 0.0
    slopes = np.array([float(np.dot(tc, d[s : s + w])) for s in starts])
    sd = 1.4826 * float(np.median(np.abs(slopes - np.median(slopes))))
    recent = abs(float(slopes[0]) - slope) if shift is None or shift < n - w else 0.0
    return float(np.hypot(sd * np.sqrt(w / n), recent)), sd * float(np.sqrt(w))


def _seasons(x: np.ndarray, step: float) -> list[np.ndarray]:
    """Profiles of the daily/weekly periods with a clear seasonal strength.

    Shortest period first, each measured on what the previous ones left.
    Strength (Wang, Smith & Hyndman 2006): ``1 - var(R) / var(S + R)`` on the
    usage minus its centred moving average of one period (which removes trend
    and level shifts); ``S`` is the profile of the last cycles (14 for the
    first period, 4 for the next).
    """
    out: list[np.ndarray] = []
    rest = x.copy()
    for i, m in enumerate(sorted(season_lengths_for(step, x.size))):
        k = m + 1 if m % 2 == 0 else m
        w = np.ones(k) / m
        if m % 2 == 0:
            w[0] = w[-1] = 0.5 / m
        core = rest[k // 2 : rest.size - k // 2] - np.convolve(rest, w, mode="valid")
        if core.size < 2 * m or not np.var(core) > 0:
            continue
        p = profile(core, m, 14 if i == 0 else 4)
        if 1 - np.var(core - align_back(p, core.size)) / np.var(core) > SEASON_STRENGTH:
            p = np.roll(p, -(k // 2))  # phase from the end of the full series
            out.append(p)
            rest = rest - align_back(p, rest.size)
    return out


def _fit_trend(x: np.ndarray, step: float, horizon: int) -> _Trend:
    n = x.size
    profs = _seasons(x, step)
    seasonal = np.zeros(n)
    for p in profs:
        seasonal += align_back(p, n)
    d = x - seasonal
    m1 = min(p.size for p in profs) if profs else max(2, min(24, n // 10))
    shift = _level_shift(d, max(m1, 12))
    b = _robust_slope(d, m1, shift)
    w = max(m1, n // 20, 1)
    if shift is not None and n - shift >= 4:
        w = min(w, n - shift)
    now = float(np.mean(d[-w:]) + b * (w - 1) / 2)
    k = max(3, m1 // 2) | 1
    smooth = np.convolve(np.pad(d, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    resid = _clip_mad(d - smooth)
    # estimation error of the anchor (mean of w points) and of the seasonal
    # profiles (medians of 4 or 7 cycles: variance ~ 1.57 sigma^2 / cycles)
    var = float(np.var(resid))
    prof_var = sum(1.57 * var / (14 if i == 0 else 4) for i in range(len(profs)))
    level_sd = float(np.sqrt(var / w + prof_var))
    slope_sd, walk_sd = _slope_variability(d, horizon, b, shift)
    return _Trend(now, b, slope_sd, walk_sd, tuple(profs), resid, max(2, m1), level_sd)


def _find_resets(x: np.ndarray) -> np.ndarray:
    dx = np.diff(x)
    if dx.size < 8:
        return np.array([], dtype=np.int64)
    sigma = 1.4826 * float(np.median(np.abs(dx - np.median(dx))))
    span = float(np.quantile(x, 0.98) - np.quantile(x, 0.02))
    thr = max(RESET_SIGMAS * sigma, RESET_FRACTION * span)
    if not thr > 0:
        return np.array([], dtype=np.int64)
    drops = np.flatnonzero(dx < -thr) + 1
    # A fill is gradual: jumps up as large as the drops make spikes or level switching,
    # whose falling edges are no clean-ups.
    if np.count_nonzero(dx > thr) * 2 >= max(1, drops.size):
        return np.array([], dtype=np.int64)
    return drops


def _fit_sawtooth(x: np.ndarray, resets: np.ndarray, horizon: int) -> _Sawtooth | None:
    if resets.size < 3:  # two whole cycles at least: one cycle's slope is no fill rate
        return None
    lengths = np.diff(resets)
    if lengths.size == 0 or np.median(lengths) < 4:
        return None
    period = int(np.median(lengths))
    rates = []
    for s, e in itertools.pairwise(resets.tolist()):
        seg = x[s:e]
        rates.append(_ols(np.arange(seg.size, dtype=np.float64), seg)[1])
    tail = x[resets[-1] :]
    if tail.size >= max(4, period // 2):  # a few points' slope is noise, not a fill rate
        rates.append(_ols(np.arange(tail.size, dtype=np.float64), tail)[1])
    r = np.asarray(rates)
    if np.median(r) <= 0:
        return None
    # troughs: a robust start level of each cycle (median of its first few points
    # minus the fill already made)
    k = max(1, min(3, period // 4))
    med_rate = float(np.median(r))
    troughs = np.array([np.median(x[s : s + k]) - med_rate * (k - 1) / 2 for s in resets])
    ta, tb = _ols(resets.astype(np.float64), troughs)
    tb_sd = 0.0
    if troughs.size >= 3:
        res = troughs - ta - tb * resets
        tc = resets - resets.mean()
        tb_sd = float(np.std(res, ddof=2) / np.sqrt(np.sum(tc * tc))) if troughs.size > 2 else 0.0
        tb_sd *= float(np.sqrt(1 + resets.size * period / max(horizon, 1)))
    # residuals of the piecewise ramp
    fit = np.empty(x.size)
    fit[: resets[0]] = x[: resets[0]]
    bounds = [*resets.tolist(), x.size]
    for s, e in itertools.pairwise(bounds):
        fit[s:e] = ta + tb * s + med_rate * np.arange(e - s)
    raw = (x - fit)[resets[0] :]
    # The shape of a cycle beyond the ramp (a daily cycle riding on daily rotations) is the
    # same in every cycle: a profile by position in the cycle, not noise to resample.
    idx = np.arange(resets[0], x.size)
    phase = np.minimum(idx - resets[np.searchsorted(resets, idx, side="right") - 1], period - 1)
    counts = np.bincount(phase, minlength=period)
    shape = np.zeros(period)
    if counts.min() >= 2:
        shape = np.array([np.median(raw[phase == j]) for j in range(period)])
        shape -= np.median(shape)
    resid = _clip_mad(raw - shape[phase])
    rate_sd = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    return _Sawtooth(
        float(x[-1]),
        int(x.size - 1 - resets[-1]),
        period,
        ta,
        tb,
        tb_sd,
        r,
        rate_sd,
        resid,
        x.size,
        shape,
    )


#: simulated paths are evaluated a block of whole paths at a time, about this many values
#: (rows × steps): small enough for the temporaries to stay in the CPU cache, large enough
#: for numpy's per-call overhead not to count
CHUNK_VALUES = 1 << 16


def _row_blocks(paths: int, h: int) -> list[tuple[int, int]]:
    rows = max(1, CHUNK_VALUES // h)
    return [(a, min(paths, a + rows)) for a in range(0, paths, rows)]


class _Noise:
    """Moving-block bootstrap of ``resid`` into ``paths`` series of ``h`` steps.

    The block starts are drawn at construction; :meth:`rows` materialises the
    noise of a few paths only (a path's noise is the same whichever rows are
    asked for together).
    """

    def __init__(
        self, resid: np.ndarray, block: int, paths: int, h: int, rng: np.random.Generator
    ) -> None:
        self.resid = resid
        self.starts: np.ndarray | None = None
        if resid.size < 2 or not np.any(resid):
            return
        block = int(min(max(block, 1), resid.size))
        nblocks = -(-h // block)
        self.starts = rng.integers(0, resid.size - block + 1, size=(paths, nblocks))
        steps = np.arange(h)
        self.which, self.within = steps // block, steps % block

    def rows(self, a: int, b: int) -> np.ndarray | float:
        if self.starts is None:
            return 0.0
        return self.resid[self.starts[a:b][:, self.which] + self.within[None, :]]


def _times(factor: float, values: np.ndarray) -> np.ndarray:
    """``factor * values``, without a pass over the values when it is exactly 1 (the
    same numbers: ``x * 1.0 == x`` for every float)."""
    return values if factor == 1.0 else factor * values


def _simulate_trend(
    m: _Trend, h: int, scenarios: Sequence[Scenario], paths: int, rng: np.random.Generator
) -> Iterator[list[np.ndarray]]:
    """Blocks of whole paths, one array per scenario: every scenario scales the same
    draws (common random numbers), so scenarios differ by what they change only."""
    k = np.arange(1, h + 1, dtype=np.float64)
    slopes = m.slope + m.slope_sd * rng.standard_normal(paths)
    offset = m.level_sd * rng.standard_normal(paths)
    seasonal = np.zeros(h)
    for p in m.seasons:
        seasonal += tile(p, h)  # phase 0 is the first projected step
    noise = _Noise(m.resid, m.block, paths, h, rng)
    # the walk's draws come last, path after path: drawing them a block of paths at a
    # time gives the same numbers as drawing them all at once
    for a, b in _row_blocks(paths, h):
        growth = slopes[a:b, None] * k[None, :]
        if m.walk_sd > 0:
            growth = growth + np.cumsum(m.walk_sd * rng.standard_normal((b - a, h)), axis=1)
        start = m.now + offset[a:b, None]
        nz = noise.rows(a, b)
        yield [
            _times(sc.level, start + _times(sc.growth, growth) + seasonal[None, :] + nz)
            for sc in scenarios
        ]


def _simulate_sawtooth(
    m: _Sawtooth, h: int, scenarios: Sequence[Scenario], paths: int, rng: np.random.Generator
) -> Iterator[list[np.ndarray]]:
    """As :func:`_simulate_trend`, for the sawtooth model."""
    k = np.arange(1, h + 1)
    rate = rng.choice(m.rates, size=paths) + 0.25 * m.rate_sd * rng.standard_normal(paths)
    rate = np.maximum(rate, 0.0)
    tb = m.trough_b + m.trough_b_sd * rng.standard_normal(paths)
    last_reset = m.n - 1 - m.since_reset
    pos = m.since_reset + k  # steps since the last reset
    cycle = pos // m.period  # 0: still in the current cycle
    phase = pos - cycle * m.period
    reset_at = last_reset + cycle * m.period
    trough0 = m.trough_a + m.trough_b * last_reset
    top = m.period - 1
    now_shape = m.shape[min(m.since_reset, top)]
    in_current = (cycle == 0)[None, :]
    noise = _Noise(m.resid, max(2, m.period // 8), paths, h, rng)
    for a, b in _row_blocks(paths, h):
        nz = noise.rows(a, b)
        out = []
        for sc in scenarios:
            r = rate[a:b] * sc.growth
            trough = trough0 + (tb[a:b] * sc.growth)[:, None] * (reset_at - last_reset)[None, :]
            current = m.last - now_shape + r[:, None] * k[None, :] + m.shape[np.minimum(pos, top)]
            later = trough + r[:, None] * phase[None, :] + m.shape[phase][None, :]
            out.append(_times(sc.level, np.where(in_current, current, later) + nz))
        yield out


def _project(
    x: np.ndarray, step: float, h: int, scenarios: Sequence[Scenario], paths: int, seed: int
) -> tuple[str, Iterator[list[np.ndarray]]]:
    """The model's name and its simulated paths, a block of paths at a time (see
    :func:`_simulate_trend`)."""
    rng = np.random.default_rng([seed, 0])
    saw = _fit_sawtooth(x, _find_resets(x), h)
    if saw is not None:
        return "sawtooth", _simulate_sawtooth(saw, h, scenarios, paths, rng)
    trend = _fit_trend(x, step, h)
    return "trend", _simulate_trend(trend, h, scenarios, paths, rng)


# -- report -----------------------------------------------------------------


def _fmt_duration(days: float) -> str:
    if days < 2:
        return f"{days * 24:.1f} hours"
    return f"{days:.1f} days"


def _beyond(days_p50: float | None, history_days: float) -> bool:
    return history_days < SHORT_HISTORY_DAYS and days_p50 is not None and days_p50 > history_days


def _too_little(history_days: float) -> str:
    minutes = history_days * 24 * 60
    span = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} hours"
    return (
        f"; projected from only {span} of history, too little to plan on (under "
        f"{SHORT_HISTORY_DAYS * 24:.0f} hours a daily cycle's upswing looks like growth)"
    )


def _sentence(resource: str, days: dict[str, float | None], horizon_days: float) -> str:
    p10, p50, p90 = days["p10"], days["p50"], days["p90"]
    horizon = _fmt_duration(horizon_days)
    if p50 is None:
        if p10 is None:
            return f"{resource} not full within {horizon}"
        return f"{resource} not full within {horizon} (10 % chance within {_fmt_duration(p10)})"
    lo = _fmt_duration(p10 if p10 is not None else p50)
    if p90 is None:
        return f"{resource} full in {_fmt_duration(p50)} (80 % interval {lo} to beyond {horizon})"
    hi = _fmt_duration(p90)
    lo_num, lo_unit = lo.split(" ")
    hi_unit = hi.split(" ")[1]
    span = f"{lo_num}–{hi}" if lo_unit == hi_unit else f"{lo}–{hi}"
    return f"{resource} full in {_fmt_duration(p50)} (80 % interval {span})"


def _exhaustion_steps(paths: np.ndarray, cap: float) -> np.ndarray:
    hit = paths >= cap
    first = np.argmax(hit, axis=1).astype(np.float64) + 1
    first[~hit.any(axis=1)] = np.inf
    return first


def _first_and_peak(
    blocks: Iterator[list[np.ndarray]],
    scenarios: int,
    paths: int,
    cap: float,
    sampler: ProjectionSampler | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per scenario, each path's exhaustion step (1-based, ``inf``: never) and highest
    usage, reduced block by block so the paths × steps matrix is never whole; the first
    scenario's usage at the sampler's kept steps goes to ``sampler``."""
    out = [(np.empty(paths), np.empty(paths)) for _ in range(scenarios)]
    a = 0
    for block in blocks:
        b = a + block[0].shape[0]
        if sampler is not None:
            sampler.add(a, block[0])
        for (first, peak), p in zip(out, block, strict=True):
            first[a:b] = _exhaustion_steps(p, cap)
            peak[a:b] = p.max(axis=1)
        a = b
    return out


def _quantile(steps: np.ndarray, q: float) -> float:
    s = np.sort(steps)
    return float(s[min(s.size - 1, int(np.floor(q * s.size)))])


def _backtest(
    x: np.ndarray, step: float, h: int, paths: int, seed: int
) -> ProjectionBacktest | None:
    hb = min(h, x.size // 4)
    if hb < 2 or x.size - hb < 16:
        return None
    _, blocks = _project(x[:-hb], step, hb, [Scenario()], paths, seed)
    p = np.concatenate([b[0] for b in blocks])  # hb <= a quarter of the history: small
    act = x[-hb:]
    med = np.median(p, axis=0)
    lo, hi = np.quantile(p, 0.1, axis=0), np.quantile(p, 0.9, axis=0)
    den = np.abs(act) + np.abs(med)
    with np.errstate(invalid="ignore", divide="ignore"):
        sm = np.where(den > 0, 200 * np.abs(act - med) / den, 0.0)
    cov = float(np.mean((act >= lo) & (act <= hi)))
    return ProjectionBacktest(hb * step / DAY, float(np.mean(sm)), cov)


def plan_capacity(
    timestamps: np.ndarray,
    usage: np.ndarray,
    capacity: float | np.ndarray,
    *,
    horizon_days: float = 30.0,
    scenarios: Sequence[Scenario] = DEFAULT_SCENARIOS,
    target_utilisation: float = 0.8,
    resource: str = "resource",
    step_seconds: float | None = None,
    paths: int = PATHS,
    seed: int = SEED,
    projection: bool = False,
) -> CapacityReport:
    """Project usage ``horizon_days`` ahead per scenario (see the module docstring).

    ``timestamps`` are Unix seconds (or ``datetime64``; exhaustion times come
    back in the same kind); ``capacity`` is a number or an array aligned with
    the timestamps (its last value holds for the future). The first scenario
    is the one summarised in :attr:`CapacityReport.summary`. ``projection``:
    also reduce the baseline's paths to :attr:`CapacityReport.projection` (for a
    chart; ~1.5 ms a plan); the other figures do not depend on it.
    """
    if not 1 <= horizon_days <= 365:
        raise BadInputError(f"horizon must be between 1 and 365 days, got {horizon_days}")
    if not 0 < target_utilisation <= 1:
        raise BadInputError(f"target utilisation must be in (0, 1], got {target_utilisation}")
    if not scenarios:
        raise BadInputError("at least one scenario is needed")
    seconds, is_dt = _to_seconds(np.asarray(timestamps))
    values = np.asarray(usage, dtype=np.float64)
    if seconds.shape != values.shape:
        raise BadInputError("timestamps and usage must have the same length")
    caps = np.broadcast_to(np.asarray(capacity, dtype=np.float64), values.shape)
    finite_caps = caps[np.isfinite(caps)]
    if finite_caps.size == 0 or not finite_caps[-1] > 0:
        raise BadInputError("capacity must be a positive number")
    cap = float(finite_caps[-1])
    grid, x, step = regularise(seconds, values, step_seconds)
    h = max(1, round(horizon_days * DAY / step))
    history_days = float(grid[-1] - grid[0]) / DAY
    model, blocks = _project(x, step, h, scenarios, paths, seed)
    sampler = ProjectionSampler(paths, h) if projection else None
    stats = _first_and_peak(blocks, len(scenarios), paths, cap, sampler)
    t_end = grid[-1]
    results = []
    for sc, (steps, peaks) in zip(scenarios, stats, strict=True):
        q = {name: _quantile(steps, qq) for name, qq in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))}
        days = {k: (v * step / DAY if np.isfinite(v) else None) for k, v in q.items()}
        when: dict[str, float | np.datetime64 | None] = {}
        for k, v in q.items():
            if not np.isfinite(v):
                when[k] = None
            elif is_dt:
                when[k] = np.datetime64(round((t_end + v * step) * 1e9), "ns")
            else:
                when[k] = float(t_end + v * step)
        needed = float(np.quantile(peaks, 0.9)) / target_utilisation
        name = resource if sc.name == "baseline" else f"{resource} ({sc.name})"
        sentence = _sentence(name, days, horizon_days)
        if _beyond(days["p50"], history_days):
            sentence += _too_little(history_days)
        if x[-1] >= cap:  # already there: exhaustion is now, whatever the scenario
            now: float | np.datetime64 = float(t_end)
            if is_dt:
                now = np.datetime64(round(t_end * 1e9), "ns")
            when = {k: now for k in when}
            days = {k: 0.0 for k in days}
            steps = np.zeros_like(steps)
            sentence = f"{name} already full ({100 * x[-1] / cap:.0f} % of capacity)"
        results.append(
            ScenarioResult(
                sc,
                when["p10"],
                when["p50"],
                when["p90"],
                days["p10"],
                days["p50"],
                days["p90"],
                float(np.mean(np.isfinite(steps))),
                needed,
                sentence,
            )
        )
    util = float(x[-1] / cap)
    bt = _backtest(x, step, h, paths, seed)
    drawn = None
    if sampler is not None:
        # a usage that was never negative is not drawn below 0 (exhaustion is unaffected)
        floor = 0.0 if np.nanmin(x) >= 0 else -np.inf
        drawn = sampler.result(step, float(t_end), is_dt, floor)
    return CapacityReport(
        tuple(results), model, step, float(horizon_days), util, bt, history_days, drawn
    )
