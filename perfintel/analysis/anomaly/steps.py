"""The detector's arithmetic, written once: scalar step functions over one state row.

Every model's per-sample update is a function here, compiled by numba
(``jit.py``; plain Python without it). A step reads and writes the slots of
series ``r`` in the state bank — ``f`` (float64), ``h`` (float32: seasonal
profiles and likelihood histograms) and ``b`` (uint8: symbol histories and
novelty tables) — from the component's offsets, and returns its outputs. The
``*_run`` loops advance ``rows[i]`` by sample ``i`` in order, so one loop
serves one series along time, a batch of many series, or any mix; the model
classes (``seasonal.py`` … ``ensemble.py``) only declare layouts and pack
parameters.

All of it lives in this one module on purpose: numba's on-disk cache is keyed
on the source file of the compiled function, so a loop must never be cached
apart from the steps it inlines.

float32 slots are read through ``np.float64(...)`` and written through
``to_f32`` (clipped to ±1e38, float32's range: offsets of values beyond it
saturate instead of overflowing) so compiled and plain-Python runs round
identically.
"""

from __future__ import annotations

import math

import numpy as np

from perfintel.analysis.anomaly.jit import njit

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAD_TO_SIGMA = 1.2533
_HALF_HOUR_MS = HOUR_MS // 2

F32_LIMIT = 1e38
#: a value's grid is never read finer than its 6th significant digit (a convention: NAB
#: cross-validation gives the same figures at 4, 6 and 8, see BENCHMARKS.md)
RESOLUTION_DIGITS = 6
_SQRT12 = math.sqrt(12.0)
#: a value at least this many grid steps is never read finer than the grid (10 ** 5
#: steps reach its 6th significant digit; the margin covers rounding of the powers)
_DIGITS_SPAN = 10.0 ** (RESOLUTION_DIGITS - 1) * (1.0 + 1e-6)


@njit
def to_f32(v):  # type: ignore[no-untyped-def]
    """``v`` as float32, clipped to float32's finite range."""
    return np.float32(min(max(v, -F32_LIMIT), F32_LIMIT))


@njit
def resolution(x):  # type: ignore[no-untyped-def]
    """The step of the grid ``x`` was reported on: the coarsest power of ten, at most 1,
    that ``x`` is a whole multiple of (1 for 0 and for whole numbers; 0.01 for 0.25), but
    never finer than the unit of its ``RESOLUTION_DIGITS``-th significant digit (so 100
    for 12345678). A series' grid is the finest of its values' (``series_grid``)."""
    ax = abs(x)
    if not (ax > 0 and ax < math.inf):
        return 1.0
    finest = math.floor(math.log10(ax)) - (RESOLUTION_DIGITS - 1)
    k = 0
    while k > finest:
        q = 10.0**k
        m = ax / q
        whole = math.floor(m + 0.5)
        if whole >= 1 and abs(m - whole) <= 1e-9 * m:
            return q
        k -= 1
    return 10.0**finest


@njit
def resolution_spread(x):  # type: ignore[no-untyped-def]
    """The spread of rounding to ``x``'s grid (uniform over one step: q/sqrt(12))."""
    return resolution(x) / _SQRT12


@njit
def series_grid(grid, x):  # type: ignore[no-untyped-def]
    """The finest grid step of a series seen on ``grid`` so far (0: none yet) once it
    reports ``x``. The grid is the series', not one value's: a utilisation of 0.5 ± 0.02
    that drops to exactly 0 or pegs at exactly 1 stays a float series, and a count's
    expected value (an average, off its grid) does not make it one. 0 lies on every
    grid, so it tells nothing."""
    if x == 0:
        return grid
    if grid > 0:
        # min(grid, resolution(x)) is grid when grid is no finer than x's 6th significant
        # digit (first with a margin, without a logarithm) or x lies on it (a grid of at
        # most 1: coarser ones come from that digit alone): tested first, as
        # ``resolution`` would, since its loop costs as much as the rest of a step
        ax = abs(x)
        if ax >= grid * _DIGITS_SPAN:
            return grid
        m = ax / grid
        whole = math.floor(m + 0.5)
        if grid <= 1.0 and whole >= 1 and abs(m - whole) <= 1e-9 * m:
            return grid
        if grid <= 10.0 ** (math.floor(math.log10(ax)) - (RESOLUTION_DIGITS - 1)):
            return grid
    q = resolution(x)
    return q if grid == 0 else min(grid, q)


# -- seasonal baseline ------------------------------------------------------------
# f slots: samples, first and last timestamp, sampling interval, fast level,
# daily and weekly deseasonalised levels, the three models' mean absolute errors,
# the series' grid step (``series_grid``; 0 until a value other than 0 is seen)
S_N, S_T0, S_TL, S_DT, S_FAST, S_L0, S_L1, S_E, S_GRID = 0, 1, 2, 3, 4, 5, 6, 7, 10
S_WIDTH_F = 11
# h slots: 24 hour-of-day offsets, then 168 hour-of-week offsets
S_DAY, S_WEEK, S_WIDTH_H = 0, 24, 192
# parameters
SP_FAST, SP_SLOW, SP_PROFILE, SP_ERR, SP_BAND, SP_PREFER, SP_CLIP, SP_WARMUP = range(8)


@njit
def seasonal_step(f, h, r, o, oh, t, x, prm):  # type: ignore[no-untyped-def]
    """Score ``x`` at ``t`` against series ``r``'s baseline, then learn from it.

    Returns (yhat, half band, anomaly_score, z, model, sigma, seasonal offset, grid
    step of the series).
    """
    hours = (t - _HALF_HOUR_MS) / HOUR_MS
    base = math.floor(hours)
    frac = hours - base
    bi = np.int64(base)
    d0 = oh + S_DAY + bi % 24
    d1 = oh + S_DAY + (bi + 1) % 24
    w0 = oh + S_WEEK + (bi + 72) % 168  # week bins count from Monday 00:00 UTC
    w1 = oh + S_WEEK + (bi + 73) % 168
    n = f[r, o + S_N]
    first = n == 0
    tsf = np.float64(t)
    t0 = tsf if first else f[r, o + S_T0]
    gap = tsf - f[r, o + S_TL]
    dt = f[r, o + S_DT]
    if not (first or gap <= 0):
        dt = gap if dt == 0 else dt + 0.1 * (gap - dt)
    fast = x if first else f[r, o + S_FAST]
    l0 = x if first else f[r, o + S_L0]
    l1 = x if first else f[r, o + S_L1]
    d_a = np.float64(h[r, d0])
    d_b = np.float64(h[r, d1])
    w_a = np.float64(h[r, w0])
    w_b = np.float64(h[r, w1])
    d = (1.0 - frac) * d_a + frac * d_b
    w = (1.0 - frac) * w_a + frac * w_b
    age = tsf - t0
    floor = 1e-9 + 1e-9 * abs(l0)
    prefer = prm[SP_PREFER]
    e0 = f[r, o + S_E]
    e1 = f[r, o + S_E + 1]
    e2 = f[r, o + S_E + 2]
    # the simplest model unless a seasonal one is clearly (``prefer``) better
    k = 0
    yhat = fast
    err_k = e0
    pen = e0
    if age >= 2 * DAY_MS and e1 / prefer < pen:
        k, yhat, err_k, pen = 1, l0 + d, e1, e1 / prefer
    if age >= 14 * DAY_MS and e2 / (prefer * prefer) < pen:
        k, yhat, err_k = 2, l1 + w, e2
    sigma = MAD_TO_SIGMA * err_k + floor
    # the spread is never below the series' resolution (the rounding to its grid: a
    # series on a grid cannot show less): for the band, z and the clipping of what is
    # learnt (a constant series learns ~0 and then clips every move to ~0). A series
    # that was only ever 0 is taken as a count (grid 1) until it says otherwise.
    grid = series_grid(f[r, o + S_GRID], x)
    grid_step = grid if grid > 0 else 1.0
    res = grid_step / _SQRT12
    spread = max(sigma, res)
    resid = x - yhat
    z = abs(resid) / spread
    half = prm[SP_BAND] * spread
    score_a = abs(resid) / half
    # no score before the 10th sample nor before the series' history spans the time
    # warm-up (``SeasonalBaseline.warmup_ms``); the band is drawn from the first sample
    if n < 10 or age < prm[SP_WARMUP]:
        score_a = 0.0
        z = 0.0
    # learn (after scoring), Holt-Winters style, Huber-clipped
    clip = prm[SP_CLIP]
    a_e = max(prm[SP_ERR], 1.0 / (n + 1.0))
    for j in range(3):
        ej = f[r, o + S_E + j]
        fj = fast if j == 0 else (l0 + d if j == 1 else l1 + w)
        e = 0.0
        if not first:
            e = abs(x - fj)
            if n >= 30:
                e = min(e, clip * max(MAD_TO_SIGMA * ej + floor, res))
        f[r, o + S_E + j] = ej + a_e * (e - ej)
    c = clip * spread
    xc = x if n < 30 else yhat + min(max(resid, -c), c)
    a_s = max(prm[SP_SLOW], 1.0 / (n + 1.0))
    e_d = (xc - l0) - d
    e_w = (xc - l1) - w
    f[r, o + S_L0] = l0 + a_s * ((xc - d) - l0)
    f[r, o + S_L1] = l1 + a_s * ((xc - w) - l1)
    f[r, o + S_FAST] = fast + prm[SP_FAST] * (x - fast)
    f[r, o + S_N] = n + 1
    f[r, o + S_T0] = t0
    f[r, o + S_TL] = tsf
    f[r, o + S_DT] = dt
    f[r, o + S_GRID] = grid
    # a bin learns at ``profile_alpha`` per hour of samples, whatever the interval
    per_hour = min(max((dt if dt > 0 else np.float64(HOUR_MS)) / HOUR_MS, 1e-3), 1.0)
    pa = 1.0 - (1.0 - prm[SP_PROFILE]) ** per_hour
    h[r, d0] = to_f32(d_a + pa * (1.0 - frac) * e_d)
    h[r, d1] = to_f32(np.float64(h[r, d1]) + pa * frac * e_d)
    h[r, w0] = to_f32(w_a + pa * (1.0 - frac) * e_w)
    h[r, w1] = to_f32(np.float64(h[r, w1]) + pa * frac * e_w)
    season = d if k == 1 else (w if k == 2 else 0.0)
    return yhat, half, score_a, z, k, sigma, season, grid_step


@njit
def seasonal_run(f, h, rows, ts, x, prm, out):  # type: ignore[no-untyped-def]
    """``SeasonalBaseline``: score (a soft tail of z), z, yhat, band, anomaly_score, model,
    sigma, grid step."""
    for i in range(len(x)):
        yhat, half, score_a, z, k, sigma, _, grid_step = seasonal_step(
            f, h, rows[i], 0, 0, ts[i], x[i], prm
        )
        out[0, i] = 1.0 - math.exp(-0.5 * max(z - 2.0, 0.0) ** 2 / 4.0)
        out[1, i] = z
        out[2, i] = yhat
        out[3, i] = yhat - half
        out[4, i] = yhat + half
        out[5, i] = score_a
        out[6, i] = k
        out[7, i] = sigma
        out[8, i] = grid_step


# -- level shift ------------------------------------------------------------------
# f slots: samples, short mean, long mean, long spread, short spread
C_N, C_MS, C_ML, C_SD, C_VS = range(5)
C_WIDTH_F = 5
CP_SHORT, CP_LONG, CP_WARMUP = range(3)


@njit
def shift_step(f, r, o, x, prm):  # type: ignore[no-untyped-def]
    """Advance series ``r`` by ``x``; returns (raw, z_mean, z_var)."""
    n = f[r, o + C_N]
    first = n == 0
    ms = x if first else f[r, o + C_MS]
    ml = x if first else f[r, o + C_ML]
    sd = f[r, o + C_SD]
    vs = f[r, o + C_VS]
    dev = abs(x - ml)
    ms = ms + prm[CP_SHORT] * (x - ms)
    vs = vs + prm[CP_SHORT] * (dev - vs)
    floor = 1e-9 + 1e-9 * abs(ml)
    sigma = MAD_TO_SIGMA * sd + floor
    z_mean = abs(ms - ml) / sigma
    z_var = abs(math.log((vs + floor) / (sd + floor)))
    raw = 0.0 if n < prm[CP_WARMUP] else max(z_mean, z_var)
    a_l = max(prm[CP_LONG], 1.0 / (n + 1.0))
    f[r, o + C_N] = n + 1
    f[r, o + C_MS] = ms
    f[r, o + C_ML] = ml + a_l * (x - ml)
    f[r, o + C_SD] = sd + a_l * (dev - sd)
    f[r, o + C_VS] = vs
    return raw, z_mean, z_var


@njit
def shift_run(f, rows, x, prm, out):  # type: ignore[no-untyped-def]
    """``LevelShift``: score (a soft tail of raw), raw, z_mean, z_var."""
    for i in range(len(x)):
        raw, z_mean, z_var = shift_step(f, rows[i], 0, x[i], prm)
        out[0, i] = 1.0 - math.exp(-0.5 * max(raw - 1.0, 0.0) ** 2)
        out[1, i] = raw
        out[2, i] = z_mean
        out[3, i] = z_var


# -- context novelty --------------------------------------------------------------
# f slots: samples, low and high end of the warm-up range
V_N, V_LO, V_HI = range(3)
V_WIDTH_F = 3
# b: the symbol histories (grids x (depth - 1) bytes), then one table per grid
VI_BINS, VI_DEPTH, VI_GRIDS, VI_WARMUP, VI_TABLE, VI_FOLD = range(6)
#: Knuth's multiplicative hash constant (2**32 / golden ratio), for folded tables
_FOLD_MUL = 2654435761


@njit
def novelty_step(f, b, r, o, ob, x, iprm, offsets, weights):  # type: ignore[no-untyped-def]
    """Advance series ``r`` by ``x``; the raw novelty in [0, 1].

    The value is quantised on ``grids`` grids shifted by 1/grids of a bin each;
    per grid, the sequences of the last 1..depth symbols index that grid's
    table directly; the raw novelty is the mean over grids of the weighted
    share of sequences not seen before. With ``fold`` > 0 the longest sequences whose
    symbols are all within the warm-up range keep a bit each (``bins ** depth``), and the
    others share ``fold`` bits by a hash of their code (a one-hash Bloom filter: such a
    sequence may look seen when it is not).
    """
    bins = iprm[VI_BINS]
    fold = iprm[VI_FOLD]
    depth = iprm[VI_DEPTH]
    grids = iprm[VI_GRIDS]
    nsym = 3 * bins
    n = f[r, o + V_N]
    first = n == 0
    lo = x if first else f[r, o + V_LO]
    hi = x if first else f[r, o + V_HI]
    learning = n < iprm[VI_WARMUP]
    if learning:
        lo = min(lo, x)
        hi = max(hi, x)
    rng = hi - lo
    if not rng > 0:
        rng = 1.0 + abs(hi)
    bins_f = np.float64(bins)
    tables = ob + grids * (depth - 1)
    total = 0.0
    for g in range(grids):
        q = math.floor((x - lo) / rng * bins_f + g / grids)
        q = min(max(q, -bins_f), 2 * bins_f - 1)  # one range below and above, then clip
        sym = np.int64(q + bins_f)
        hist = ob + g * (depth - 1)  # most recent first
        tb = tables + g * iprm[VI_TABLE]
        code = sym
        inner = bins <= sym < 2 * bins  # every symbol within the warm-up range
        inner_code = sym - bins
        acc = 0.0
        for j in range(depth):
            if j > 0:
                prev = np.int64(b[r, hist + j - 1])
                code = code * (nsym + 1) + prev + 1
                inner = inner and bins <= prev < 2 * bins
                inner_code = inner_code * bins + prev - bins
            if fold > 0 and j == depth - 1:
                if inner:
                    slot = offsets[j] + inner_code
                else:
                    hashed = ((code * _FOLD_MUL) & 0xFFFFFFFF) * fold >> 32
                    slot = offsets[j] + bins**depth + hashed
            else:
                slot = code + offsets[j]
            byte = tb + (slot >> 3)
            bit = np.uint8(1 << (slot & 7))
            if (b[r, byte] & bit) == 0:
                acc += weights[j]
                b[r, byte] |= bit
        for j in range(depth - 2, 0, -1):
            b[r, hist + j] = b[r, hist + j - 1]
        if depth > 1:
            b[r, hist] = np.uint8(sym)
        total += acc
    f[r, o + V_N] = n + 1
    f[r, o + V_LO] = lo
    f[r, o + V_HI] = hi
    return 0.0 if learning else total / grids


@njit
def novelty_run(f, b, rows, x, iprm, offsets, weights, out):  # type: ignore[no-untyped-def]
    """``ContextNovelty``: score and raw are the raw novelty."""
    for i in range(len(x)):
        raw = novelty_step(f, b, rows[i], 0, 0, x[i], iprm, offsets, weights)
        out[0, i] = raw
        out[1, i] = raw


# -- anomaly likelihood -----------------------------------------------------------
# f slots: samples, short average; h: the decayed histogram
L_N, L_SHORT = range(2)
L_WIDTH_F = 2
LP_ALPHA, LP_WIDTH, LP_BINS, LP_DECAY, LP_WARMUP, LP_NORM = range(6)


@njit
def likelihood_step(f, h, r, o, oh, x, prm):  # type: ignore[no-untyped-def]
    """Advance series ``r`` by the raw surprise ``x``; returns (score, tail probability)."""
    nb = np.int64(prm[LP_BINS])
    keep = 1.0 - prm[LP_DECAY]
    n = f[r, o + L_N]
    short = f[r, o + L_SHORT]
    short = short + (1.0 if n == 0 else prm[LP_ALPHA]) * (x - short)
    pos = min(max(short / prm[LP_WIDTH], 0.0), nb - 1e-9)
    bi = np.int64(pos)
    frac = 0.0 if bi >= nb - 1 else pos - bi
    above = 0.0
    for j in range(bi, nb):
        above += np.float64(h[r, oh + j])
    total = above  # summed on from here, so never below ``above``
    for j in range(bi):
        total += np.float64(h[r, oh + j])
    above -= frac * np.float64(h[r, oh + bi])  # the bin's mass spread over the bin
    p = (max(above, 0.0) + 1.0) / (total + 1.0)
    score = min(max(-math.log10(p) / prm[LP_NORM], 0.0), 1.0)
    # break ties among never-seen levels by how far the level is
    score = 0.97 * score + 0.03 * (1.0 - math.exp(-max(short, 0.0)))
    if n < prm[LP_WARMUP]:
        score = 0.0
    for j in range(nb):
        h[r, oh + j] = to_f32(np.float64(h[r, oh + j]) * keep)
    h[r, oh + bi] = to_f32(np.float64(h[r, oh + bi]) + 1.0)
    f[r, o + L_N] = n + 1
    f[r, o + L_SHORT] = short
    return score, p


@njit
def likelihood_run(f, h, rows, x, prm, out):  # type: ignore[no-untyped-def]
    """``AnomalyLikelihood``: score and the tail probability."""
    for i in range(len(x)):
        score, p = likelihood_step(f, h, rows[i], 0, 0, max(x[i], 0.0), prm)
        out[0, i] = score
        out[1, i] = p


# -- the ensemble -----------------------------------------------------------------
# layout entries (offsets of the parts), -1 for a likelihood that is not kept
E_S, E_SH, E_C, E_V, E_VB, E_L, E_LH, E_Q = 0, 1, 2, 3, 4, 5, 8, 11
E_LAYOUT = 12
EP_W, EP_ALARM, EP_REST, EP_BAND, EP_WARM, EP_DESEASON = 0, 3, 4, 5, 6, 7


@njit
def ensemble_run(  # type: ignore[no-untyped-def]
    f, h, b, rows, ts, x, lay, e_prm, s_prm, c_prm, v_iprm, v_off, v_w, l_prm, out
):
    """``Ensemble``: advance ``rows[i]`` by ``(ts[i], x[i])`` in order.

    ``out`` rows: score, raw, anomaly_score, yhat, lower, upper, which, fired,
    alert, z, model, sigma, the three components' likelihood scores, then the series'
    grid step.
    """
    liks = np.zeros(3)
    for i in range(len(x)):
        r = rows[i]
        xi = x[i]
        yhat, half, score_a, z, k, sigma, season, grid_step = seasonal_step(
            f, h, r, lay[E_S], lay[E_SH], ts[i], xi, s_prm
        )
        x_c = xi - season if e_prm[EP_DESEASON] > 0 else xi
        raw_c, _, _ = shift_step(f, r, lay[E_C], x_c, c_prm)
        raw_v = novelty_step(f, b, r, lay[E_V], lay[E_VB], xi, v_iprm, v_off, v_w)
        best = -1.0
        which = 0
        for j in range(3):
            liks[j] = 0.0
            if lay[E_L + j] >= 0:
                inp = math.log1p(z) if j == 0 else (math.log1p(raw_c) if j == 1 else raw_v)
                liks[j], _ = likelihood_step(f, h, r, lay[E_L + j], lay[E_LH + j], inp, l_prm[j])
            v = liks[j] * e_prm[EP_W + j]
            if v > best:
                best, which = v, j
        # the published score waits for the seasonal baseline's time warm-up (its state
        # keeps the series' first timestamp): the components learn, nothing fires
        warming = ts[i] - f[r, lay[E_S] + S_T0] < s_prm[SP_WARMUP]
        q = f[r, lay[E_Q]]
        resting = q > 0
        fire = (not (resting or warming)) and best >= e_prm[EP_ALARM]
        f[r, lay[E_Q]] = e_prm[EP_REST] if fire else max(q - 1.0, 0.0)
        far = score_a >= e_prm[EP_BAND] and f[r, lay[E_S] + S_N] > e_prm[EP_WARM]
        out[0, i] = 0.0 if (resting or warming) else min(max(best, 0.0), 1.0)
        out[1, i] = best
        out[2, i] = score_a
        out[3, i] = yhat
        out[4, i] = yhat - half
        out[5, i] = yhat + half
        out[6, i] = which if fire else 0
        out[7, i] = 1.0 if fire else 0.0
        out[8, i] = 1.0 if (fire or far) else 0.0
        out[9, i] = z
        out[10, i] = k
        out[11, i] = sigma
        out[12, i] = liks[0]
        out[13, i] = liks[1]
        out[14, i] = liks[2]
        out[15, i] = grid_step
