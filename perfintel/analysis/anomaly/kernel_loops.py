"""The scalar loops of the anomaly kernel, compiled with numba (see ``kernel.py``).

Each loop advances one series (row ``r`` of a state bank, the same arrays the
vectorised ``step`` methods use) through ``M`` finite samples and writes its
per-sample outputs into ``out`` (one row per output). The arithmetic repeats
the vectorised models operation for operation, in the same order, so results
round identically. What the loops do *not* compute are the transcendental
functions (``log``, ``log1p``, ``log10``, ``exp``, ``**``): numpy evaluates
those with its own SIMD routines, which differ from the C library's (that
numba calls) in the last bit for a few percent of inputs. ``kernel.py``
therefore runs the model in stages — loop, numpy, loop — wherever a
transcendental value feeds later state, and calls the very numpy functions the
vector path calls.

Nothing here allocates per sample; none of it raises.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.jit import njit

_MAD_TO_SIGMA = 1.2533
_HOUR_MS = 3_600_000
_HALF_HOUR_MS = _HOUR_MS // 2
_DAY_MS = 24 * _HOUR_MS
_INF = np.inf


@njit
def fmax(a: float, b: float) -> float:
    """``np.maximum`` of two floats as numpy computes it on x86 (SSE/AVX ``maxpd``):
    NaN propagates, and of two equal values (``+0.0``/``-0.0``) the second."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a > b else b


@njit
def fmin(a: float, b: float) -> float:
    """``np.minimum`` of two floats, the same rules as ``fmax``."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a < b else b


@njit
def fclip(x: float, lo: float, hi: float) -> float:
    """``np.clip(array, lo, hi)`` with scalar bounds: ``x`` unless strictly outside
    (a value equal to a bound keeps its own sign of zero; NaN stays NaN)."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


# -- seasonal baseline ----------------------------------------------------------


@njit
def sampling_rate(ts, r, s_n, s_tl, s_dt):  # type: ignore[no-untyped-def]
    """Per sample, the hours one sample stands for (``per_hour`` in ``SeasonalBaseline.step``).

    Depends on the timestamps only; does not touch the state.
    """
    m = len(ts)
    out = np.empty(m)
    n = s_n[r]
    t_last = s_tl[r]
    dt = s_dt[r]
    for i in range(m):
        tsf = np.float64(ts[i])
        gap = tsf - t_last
        if not (n == 0 or gap <= 0):
            dt = gap if dt == 0 else dt + 0.1 * (gap - dt)
        v = (dt if dt > 0 else np.float64(_HOUR_MS)) / _HOUR_MS
        out[i] = fclip(v, 1e-3, 1.0)
        n += 1.0
        t_last = tsf
    return out


@njit
def seasonal_loop(  # type: ignore[no-untyped-def]
    ts, x, pa, r, s_n, s_t0, s_tl, s_dt, s_fast, s_level, s_err, s_day, s_week, prm, out
):
    """``SeasonalBaseline.step`` over ``M`` samples; ``pa`` the profile rate per sample.

    ``prm``: fast_alpha, slow_alpha, error_alpha, band, prefer, prefer**2, clip.
    ``out`` rows: yhat, lower, upper, anomaly_score, z, model, sigma, season, n after.
    """
    fast_alpha, slow_alpha, error_alpha = prm[0], prm[1], prm[2]
    band, prefer, prefer2, clip = prm[3], prm[4], prm[5], prm[6]
    f = np.empty(3)
    pen = np.empty(3)
    for i in range(len(x)):
        t = ts[i]
        xi = x[i]
        hours = (t - _HALF_HOUR_MS) / _HOUR_MS
        base = np.floor(hours)
        frac = hours - base
        b = np.int64(base)
        d0 = b % 24
        d1 = (d0 + 1) % 24
        w0 = (b + 72) % 168
        w1 = (w0 + 1) % 168
        n = s_n[r]
        first = n == 0
        tsf = np.float64(t)
        t0 = tsf if first else s_t0[r]
        gap = tsf - s_tl[r]
        dt = s_dt[r]
        if not (first or gap <= 0):
            dt = gap if dt == 0 else dt + 0.1 * (gap - dt)
        fast = xi if first else s_fast[r]
        l0 = xi if first else s_level[r, 0]
        l1 = xi if first else s_level[r, 1]
        d_a = s_day[r, d0]
        d_b = s_day[r, d1]
        w_a = s_week[r, w0]
        w_b = s_week[r, w1]
        d = (1.0 - frac) * d_a + frac * d_b
        w = (1.0 - frac) * w_a + frac * w_b
        f[0] = fast
        f[1] = l0 + d
        f[2] = l1 + w
        age = tsf - t0
        floor = 1e-9 + 1e-9 * abs(l0)
        pen[0] = s_err[r, 0]
        pen[1] = s_err[r, 1] / prefer if age >= 2 * _DAY_MS else _INF
        pen[2] = s_err[r, 2] / prefer2 if age >= 14 * _DAY_MS else _INF
        k = 0  # np.argmin: the first minimum, or the first NaN
        if pen[0] == pen[0]:
            for j in range(1, 3):
                if pen[j] != pen[j]:
                    k = j
                    break
                if pen[j] < pen[k]:
                    k = j
        yhat = f[k]
        sigma = _MAD_TO_SIGMA * s_err[r, k] + floor
        resid = xi - yhat
        z = abs(resid) / sigma
        half = band * sigma
        score_a = abs(resid) / half
        if n < 10:
            score_a = 0.0
            z = 0.0
        # learn (after scoring)
        a_e = fmax(error_alpha, 1.0 / (n + 1.0))
        for j in range(3):
            ej = s_err[r, j]
            if first:
                e = 0.0
            else:
                cap = _INF if n < 30 else clip * (_MAD_TO_SIGMA * ej + floor)
                e = fmin(abs(xi - f[j]), cap)
            s_err[r, j] = ej + a_e * (e - ej)
        c = clip * sigma
        xc = xi if n < 30 else yhat + fmin(fmax(resid, -c), c)  # array bounds: max, then min
        fast = fast + fast_alpha * (xi - fast)
        a_s = fmax(slow_alpha, 1.0 / (n + 1.0))
        e_d = (xc - l0) - d
        e_w = (xc - l1) - w
        s_level[r, 0] = l0 + a_s * ((xc - d) - l0)
        s_level[r, 1] = l1 + a_s * ((xc - w) - l1)
        s_n[r] = n + 1
        s_t0[r] = t0
        s_tl[r] = tsf
        s_dt[r] = dt
        s_fast[r] = fast
        p = pa[i]
        s_day[r, d0] = d_a + p * (1.0 - frac) * e_d
        s_day[r, d1] = s_day[r, d1] + p * frac * e_d
        s_week[r, w0] = w_a + p * (1.0 - frac) * e_w
        s_week[r, w1] = s_week[r, w1] + p * frac * e_w
        out[0, i] = yhat
        out[1, i] = yhat - half
        out[2, i] = yhat + half
        out[3, i] = score_a
        out[4, i] = z
        out[5, i] = k
        out[6, i] = sigma
        out[7, i] = d if k == 1 else (w if k == 2 else 0.0)
        out[8, i] = n + 1


# -- level shift ----------------------------------------------------------------


@njit
def shift_loop(x, r, c_n, c_ms, c_ml, c_sd, c_vs, prm, out):  # type: ignore[no-untyped-def]
    """``LevelShift.step`` up to its ``log``; ``prm``: short_alpha, long_alpha, warmup.

    ``out`` rows: z_mean, the spread ratio whose |log| is z_var, 1.0 while warming up.
    """
    short_alpha, long_alpha, warmup = prm[0], prm[1], prm[2]
    for i in range(len(x)):
        xi = x[i]
        n = c_n[r]
        first = n == 0
        ms = xi if first else c_ms[r]
        ml = xi if first else c_ml[r]
        sd = c_sd[r]
        vs = c_vs[r]
        dev = abs(xi - ml)
        ms = ms + short_alpha * (xi - ms)
        vs = vs + short_alpha * (dev - vs)
        floor = 1e-9 + 1e-9 * abs(ml)
        sigma = _MAD_TO_SIGMA * sd + floor
        out[0, i] = abs(ms - ml) / sigma
        out[1, i] = (vs + floor) / (sd + floor)
        out[2, i] = 1.0 if n < warmup else 0.0
        a_l = fmax(long_alpha, 1.0 / (n + 1.0))
        c_ms[r] = ms
        c_ml[r] = ml + a_l * (xi - ml)
        c_sd[r] = sd + a_l * (dev - sd)
        c_vs[r] = vs
        c_n[r] = n + 1


# -- context novelty ------------------------------------------------------------


@njit
def novelty_loop(  # type: ignore[no-untyped-def]
    x, r, v_n, v_lo, v_hi, v_hist, v_bits, iprm, offsets, weights, salt, mult, out
):
    """``ContextNovelty.step``; writes the raw novelty per sample into ``out``.

    ``iprm``: bins, depth, direct (1/0), nsym, warmup, hash shift.
    """
    bins, depth, direct, nsym, warmup, hshift = (
        iprm[0],
        iprm[1],
        iprm[2],
        iprm[3],
        iprm[4],
        iprm[5],
    )
    bins_f = np.float64(bins)
    codes = np.empty(depth, dtype=np.int64)
    byte = np.empty(depth, dtype=np.int64)
    bit = np.empty(depth, dtype=np.uint8)
    sh29 = np.uint64(29)
    shs = np.uint64(hshift)
    for i in range(len(x)):
        xi = x[i]
        n = v_n[r]
        first = n == 0
        lo = xi if first else v_lo[r]
        hi = xi if first else v_hi[r]
        learning = n < warmup
        if learning:
            lo = fmin(lo, xi)
            hi = fmax(hi, xi)
        rng = hi - lo
        if not rng > 0:
            rng = 1.0 + abs(hi)
        b = np.floor((xi - lo) / rng * bins_f)
        b = fclip(b, -bins_f, 2 * bins_f - 1)
        sym = np.int64(b + bins_f)
        codes[0] = sym
        for j in range(1, depth):
            codes[j] = codes[j - 1] * (nsym + 1) + v_hist[r, j - 1] + 1
        acc = 0.0
        for j in range(depth):
            if direct:
                slot = codes[j] + offsets[j]
            else:
                h = (np.uint64(codes[j]) + salt) * mult
                h = (h ^ (h >> sh29)) * mult
                slot = np.int64(h >> shs)
            byte[j] = slot >> 3
            bit[j] = np.uint8(1 << (slot & 7))
        for j in range(depth):  # all lookups before any bit is set
            new = (v_bits[r, byte[j]] & bit[j]) == 0
            acc = acc + (1.0 if new else 0.0) * weights[j]
        out[i] = 0.0 if learning else acc
        for j in range(depth):
            v_bits[r, byte[j]] |= bit[j]
        for j in range(depth - 2, 0, -1):
            v_hist[r, j] = v_hist[r, j - 1]
        if depth > 1:
            v_hist[r, 0] = sym
        v_n[r] = n + 1
        v_lo[r] = lo
        v_hi[r] = hi


# -- anomaly likelihood ---------------------------------------------------------


@njit
def _mass_at_or_above(hist, r, b):  # type: ignore[no-untyped-def]
    """float32 sum of ``hist[r, b:]``, rounded exactly as numpy's pairwise float32 sum
    of the row with the bins below ``b`` zeroed (8 accumulators; rows up to 128 bins)."""
    nb = hist.shape[1]
    zero = np.float32(0.0)
    if nb < 8:
        res = zero
        for j in range(nb):
            res += hist[r, j] if j >= b else zero
        return zero + res
    r0 = hist[r, 0] if b <= 0 else zero
    r1 = hist[r, 1] if b <= 1 else zero
    r2 = hist[r, 2] if b <= 2 else zero
    r3 = hist[r, 3] if b <= 3 else zero
    r4 = hist[r, 4] if b <= 4 else zero
    r5 = hist[r, 5] if b <= 5 else zero
    r6 = hist[r, 6] if b <= 6 else zero
    r7 = hist[r, 7] if b <= 7 else zero
    j = 8
    lim = nb - nb % 8
    while j < lim:
        r0 += hist[r, j] if j >= b else zero
        r1 += hist[r, j + 1] if j + 1 >= b else zero
        r2 += hist[r, j + 2] if j + 2 >= b else zero
        r3 += hist[r, j + 3] if j + 3 >= b else zero
        r4 += hist[r, j + 4] if j + 4 >= b else zero
        r5 += hist[r, j + 5] if j + 5 >= b else zero
        r6 += hist[r, j + 6] if j + 6 >= b else zero
        r7 += hist[r, j + 7] if j + 7 >= b else zero
        j += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while j < nb:
        res += hist[r, j] if j >= b else zero
        j += 1
    return zero + res


@njit
def likelihood_loop(  # type: ignore[no-untyped-def]
    x, r, l_n, l_short, l_total, l_hist, prm, decay32, out
):
    """``AnomalyLikelihood.step`` up to its ``log10``/``exp``.

    ``prm``: short_alpha, width, bins - 1e-9, 1 - decay, warmup; ``decay32`` is
    ``float32(1 - decay)``. ``out`` rows: mass above, total before, short average
    after, 1.0 while warming up.
    """
    short_alpha, width, pos_hi, keep, warmup = prm[0], prm[1], prm[2], prm[3], prm[4]
    nb = l_hist.shape[1]
    one32 = np.float32(1.0)
    for i in range(len(x)):
        n = l_n[r]
        short = l_short[r]
        short = short + (1.0 if n == 0 else short_alpha) * (x[i] - short)
        pos = fclip(short / width, 0.0, pos_hi)
        b = np.int64(pos)
        frac = 0.0 if b >= nb - 1 else pos - b
        mass = _mass_at_or_above(l_hist, r, b)
        total = l_total[r]
        out[0, i] = np.float64(mass) - frac * np.float64(l_hist[r, b])
        out[1, i] = total
        out[2, i] = short
        out[3, i] = 1.0 if n < warmup else 0.0
        for j in range(nb):
            l_hist[r, j] = l_hist[r, j] * decay32
        l_hist[r, b] = l_hist[r, b] + one32
        l_n[r] = n + 1
        l_short[r] = short
        l_total[r] = total * keep + 1.0


# -- ensemble: combination and alarm suppression --------------------------------


@njit
def combine_loop(liks, weights, band, s_n_after, quiet, r, prm, out):  # type: ignore[no-untyped-def]
    """The ensemble's max-of-weighted-likelihoods and its alarm suppression.

    ``prm``: alarm, rest, band_alert, lik_warmup. ``out`` rows: score, raw
    (combined), which, fired, alert.
    """
    alarm, rest, band_alert, lik_warmup = prm[0], prm[1], prm[2], prm[3]
    nc = liks.shape[0]
    for i in range(liks.shape[1]):
        k = 0  # np.argmax: the first maximum, or the first NaN
        best = liks[0, i] * weights[0]
        if best == best:
            for j in range(1, nc):
                v = liks[j, i] * weights[j]
                if v != v:
                    k = j
                    best = v
                    break
                if v > best:
                    k = j
                    best = v
        q = quiet[r]
        resting = q > 0
        fire = (not resting) and best >= alarm
        out[0, i] = 0.0 if resting else fclip(best, 0.0, 1.0)
        out[1, i] = best
        out[2, i] = k if fire else 0
        out[3, i] = 1.0 if fire else 0.0
        far = band[i] >= band_alert and s_n_after[i] > lik_warmup
        out[4, i] = 1.0 if (fire or far) else 0.0
        quiet[r] = rest if fire else fmax(q - 1.0, 0.0)
