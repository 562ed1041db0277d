"""Functions over range vectors: rate and friends, ``*_over_time``, deriv, predict_linear.

Every function sees all windows (series × steps) at once. Window ``(i, j)``
holds the flat samples ``lo[i, j] <= k < hi[i, j]`` of a ``RangeInput``.
Where Prometheus folds a window with a sequential loop (sums, means,
variances, regressions) the fold is replayed position by position across all
windows, so results agree with Prometheus to the last bit or close to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from perfintel.query.promql.values import RangeInput, Vec, drop_name, merge_same_labels

_CHUNK = 4_000_000  # windows × positions gathered at once by the quantile path


def _output(
    ri: RangeInput, values: np.ndarray, present: np.ndarray, *, keep_name: bool = False
) -> Vec:
    labels = list(ri.labels) if keep_name else [drop_name(ls) for ls in ri.labels]
    vec = Vec(labels, values, present).compact()
    return merge_same_labels(vec, whole_range=True)


def _windows(ri: RangeInput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = ri.bounds()
    return lo, hi, hi - lo


def _positions(
    lo: np.ndarray, cnt: np.ndarray, ri: RangeInput
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(k, active, value_k)`` for positions ``k`` of 1-D window arrays."""
    top = int(cnt.max()) if cnt.size else 0
    for k in range(top):
        if ri.check_deadline is not None and k % 64 == 63:
            ri.check_deadline()
        act = cnt > k
        yield k, act, ri.vals[np.where(act, lo + k, 0)]


def _fold(
    ri: RangeInput, min_count: int, fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``fn(lo, cnt, idx_of_windows)`` over the windows holding at least ``min_count``
    samples; returns full ``(values, present)`` arrays."""
    lo, _hi, cnt = _windows(ri)
    present = cnt >= min_count
    out = np.full(cnt.shape, np.nan)
    if present.any():
        sel = np.flatnonzero(present.ravel())
        out.ravel()[sel] = fn(lo.ravel()[sel], cnt.ravel()[sel], sel)
    return out, present


# --- rate, increase, delta --------------------------------------------------------


def extrapolated_rate(ri: RangeInput, *, counter: bool, per_second: bool) -> Vec:
    """Prometheus's extrapolatedRate (2.x): difference of the first and last sample,
    corrected for counter resets, extrapolated towards the window's edges."""
    lo, hi, cnt = _windows(ri)
    ok = cnt >= 2
    first = np.where(ok, lo, 0)
    last = np.where(ok, hi - 1, 0)
    if len(ri.vals) == 0:
        return _output(ri, np.zeros(cnt.shape), np.zeros(cnt.shape, bool))
    fv, lv = ri.vals[first], ri.vals[last]
    ft, lt = ri.ts[first], ri.ts[last]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        result = lv - fv
        if counter:
            result = _add_resets(ri, lo, cnt, ok, result)
        range_start = ri.ends[None, :] - ri.range_ms
        to_start = (ft - range_start) / 1000
        to_end = (ri.ends[None, :] - lt) / 1000
        sampled = (lt - ft) / 1000
        avg = sampled / np.maximum(cnt - 1, 1)
        if counter:
            to_zero = sampled * (fv / result)
            use = (result > 0) & (fv >= 0) & (to_zero < to_start)
            to_start = np.where(use, to_zero, to_start)
        threshold = avg * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, avg / 2)
        interval = interval + np.where(to_end < threshold, to_end, avg / 2)
        factor = interval / sampled
        if per_second:
            factor = factor / (ri.range_ms / 1000)
        result = result * factor
    return _output(ri, result, ok)


def _add_resets(
    ri: RangeInput, lo: np.ndarray, cnt: np.ndarray, ok: np.ndarray, result: np.ndarray
) -> np.ndarray:
    """Add the value before every counter reset, in sample order (windows with resets only)."""
    v = ri.vals
    drop = np.zeros(len(v), np.int64)
    with np.errstate(invalid="ignore"):
        drop[1:] = v[1:] < v[:-1]
    csum = np.cumsum(drop)
    hi = lo + cnt
    resets = np.where(ok, csum[np.where(ok, hi - 1, 0)] - csum[np.where(ok, lo, 0)], 0)
    sel = np.flatnonzero((resets > 0).ravel())
    if len(sel) == 0:
        return result
    wlo, wcnt = lo.ravel()[sel], cnt.ravel()[sel]
    acc = result.ravel()[sel].copy()
    prev = v[wlo]
    for k in range(1, int(wcnt.max())):
        act = wcnt > k
        cur = v[np.where(act, wlo + k, 0)]
        hit = act & (cur < prev)
        acc = np.where(hit, acc + prev, acc)
        prev = np.where(act, cur, prev)
    out = result.copy()
    out.ravel()[sel] = acc
    return out


def instant_rate(ri: RangeInput, *, per_second: bool) -> Vec:
    """irate / idelta: the last two samples of each window."""
    _lo, hi, cnt = _windows(ri)
    ok = cnt >= 2
    if len(ri.vals) == 0:
        return _output(ri, np.zeros(cnt.shape), ok)
    b = np.where(ok, hi - 1, 0)
    a = np.where(ok, hi - 2, 0)
    lv, pv = ri.vals[b], ri.vals[a]
    with np.errstate(invalid="ignore", divide="ignore"):
        if per_second:
            res = np.where(lv < pv, lv, lv - pv)
            res = res / ((ri.ts[b] - ri.ts[a]) / 1000)
        else:
            res = lv - pv
    return _output(ri, res, ok)


# --- simple folds ----------------------------------------------------------------


def count_over_time(ri: RangeInput) -> Vec:
    _lo, _hi, cnt = _windows(ri)
    return _output(ri, cnt.astype(np.float64), cnt > 0)


def present_over_time(ri: RangeInput) -> Vec:
    _lo, _hi, cnt = _windows(ri)
    return _output(ri, np.ones(cnt.shape), cnt > 0)


def last_over_time(ri: RangeInput) -> Vec:
    _lo, hi, cnt = _windows(ri)
    ok = cnt > 0
    vals = ri.vals[np.where(ok, hi - 1, 0)] if len(ri.vals) else np.zeros(cnt.shape)
    return _output(ri, vals, ok, keep_name=True)


def sum_over_time(ri: RangeInput) -> Vec:
    def fn(lo: np.ndarray, cnt: np.ndarray, _sel: np.ndarray) -> np.ndarray:
        acc = np.zeros(len(lo))
        c = np.zeros(len(lo))
        for _k, act, v in _positions(lo, cnt, ri):
            na, nc = _kahan_inc(v, acc, c)
            acc, c = np.where(act, na, acc), np.where(act, nc, c)
        return np.where(np.isinf(acc), acc, acc + c)

    with np.errstate(invalid="ignore", over="ignore"):
        return _output(ri, *_fold(ri, 1, fn))


def avg_over_time(ri: RangeInput) -> Vec:
    """Incremental mean with Kahan compensation, skipping updates once the mean is infinite."""

    def fn(lo: np.ndarray, cnt: np.ndarray, _sel: np.ndarray) -> np.ndarray:
        mean = np.zeros(len(lo))
        c = np.zeros(len(lo))
        for k, act, v in _positions(lo, cnt, ri):
            n = k + 1.0
            inf_mean = np.isinf(mean)
            skip = inf_mean & (
                (np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v))
            )
            nm, nc = _kahan_inc(v / n - mean / n, mean, c)
            upd = act & ~skip
            mean, c = np.where(upd, nm, mean), np.where(upd, nc, c)
        return np.where(np.isinf(mean), mean, mean + c)

    with np.errstate(invalid="ignore", over="ignore"):
        return _output(ri, *_fold(ri, 1, fn))


def _extreme(ri: RangeInput, pick: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Vec:
    def fn(lo: np.ndarray, cnt: np.ndarray, _sel: np.ndarray) -> np.ndarray:
        acc = ri.vals[lo].copy()
        for _k, act, v in _positions(lo, cnt, ri):
            acc = np.where(act, pick(acc, v), acc)
        return acc

    return _output(ri, *_fold(ri, 1, fn))


def min_over_time(ri: RangeInput) -> Vec:
    return _extreme(ri, np.fmin)


def max_over_time(ri: RangeInput) -> Vec:
    return _extreme(ri, np.fmax)


def _variance(ri: RangeInput, sqrt: bool) -> Vec:
    def fn(lo: np.ndarray, cnt: np.ndarray, _sel: np.ndarray) -> np.ndarray:
        mean = np.zeros(len(lo))
        cmean = np.zeros(len(lo))
        aux = np.zeros(len(lo))
        caux = np.zeros(len(lo))
        for k, act, v in _positions(lo, cnt, ri):
            delta = v - (mean + cmean)
            nm, ncm = _kahan_inc(delta / (k + 1.0), mean, cmean)
            na, nca = _kahan_inc(delta * (v - (nm + ncm)), aux, caux)
            mean, cmean = np.where(act, nm, mean), np.where(act, ncm, cmean)
            aux, caux = np.where(act, na, aux), np.where(act, nca, caux)
        res = (aux + caux) / cnt
        return np.sqrt(res) if sqrt else res

    with np.errstate(invalid="ignore", over="ignore"):
        return _output(ri, *_fold(ri, 1, fn))


def stddev_over_time(ri: RangeInput) -> Vec:
    return _variance(ri, True)


def stdvar_over_time(ri: RangeInput) -> Vec:
    return _variance(ri, False)


def quantile_over_time(ri: RangeInput, q: np.ndarray) -> Vec:
    def fn(lo: np.ndarray, cnt: np.ndarray, sel: np.ndarray) -> np.ndarray:
        steps = ri.ends.shape[0]
        qs = q[sel % steps]
        out = np.empty(len(lo))
        width = int(cnt.max())
        per = max(1, _CHUNK // max(width, 1))
        for s in range(0, len(lo), per):
            first, c, qq = lo[s : s + per], cnt[s : s + per], qs[s : s + per]
            pos = np.arange(width)[None, :]
            idx = np.where(pos < c[:, None], first[:, None] + pos, 0)
            win = np.where(pos < c[:, None], ri.vals[idx], np.inf)
            win.sort(axis=1)
            out[s : s + per] = _quantile_rows(win, c, qq)
        return out

    with np.errstate(invalid="ignore"):
        return _output(ri, *_fold(ri, 1, fn))


def _quantile_rows(sorted_rows: np.ndarray, n: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Prometheus's quantile(): weighted between the two neighbouring ranks."""
    nf = n.astype(np.float64)
    rank = q * (nf - 1)
    lower = np.maximum(0, np.floor(rank))
    upper = np.minimum(nf - 1, lower + 1)
    weight = rank - np.floor(rank)
    rows = np.arange(len(n))
    top = sorted_rows.shape[1] - 1
    li = np.clip(np.nan_to_num(lower), 0, top).astype(np.intp)
    ui = np.clip(np.nan_to_num(upper), 0, top).astype(np.intp)
    res = sorted_rows[rows, li] * (1 - weight) + sorted_rows[rows, ui] * weight
    res = np.where(q < 0, -np.inf, res)
    return np.where(q > 1, np.inf, res)


def _changes_like(ri: RangeInput, flag: np.ndarray) -> Vec:
    lo, hi, cnt = _windows(ri)
    ok = cnt > 0
    csum = np.cumsum(flag.astype(np.int64))
    if len(csum) == 0:
        return _output(ri, np.zeros(cnt.shape), ok)
    res = csum[np.where(ok, hi - 1, 0)] - csum[np.where(ok, lo, 0)]
    return _output(ri, res.astype(np.float64), ok)


def changes(ri: RangeInput) -> Vec:
    v = ri.vals
    flag = np.zeros(len(v), bool)
    with np.errstate(invalid="ignore"):
        flag[1:] = (v[1:] != v[:-1]) & ~(np.isnan(v[1:]) & np.isnan(v[:-1]))
    return _changes_like(ri, flag)


def resets(ri: RangeInput) -> Vec:
    v = ri.vals
    flag = np.zeros(len(v), bool)
    with np.errstate(invalid="ignore"):
        flag[1:] = v[1:] < v[:-1]
    return _changes_like(ri, flag)


# --- linear regression -------------------------------------------------------------


def _kahan_inc(inc: np.ndarray, total: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = total + inc
    c = np.where(np.abs(total) >= np.abs(inc), c + ((total - t) + inc), c + ((inc - t) + total))
    return t, c


def _regression(
    ri: RangeInput, intercept_at: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope and intercept per window, as Prometheus's linearRegression.

    ``intercept_at`` is per step; ``None`` means each window's first sample time.
    """
    lo, _hi, cnt = _windows(ri)
    ok = cnt >= 2
    slope = np.full(cnt.shape, np.nan)
    icpt = np.full(cnt.shape, np.nan)
    sel = np.flatnonzero(ok.ravel())
    if len(sel) == 0:
        return slope, icpt, ok
    wl, wc = lo.ravel()[sel], cnt.ravel()[sel]
    steps = cnt.shape[1]
    base = ri.ts[wl] if intercept_at is None else intercept_at[sel % steps]
    zeros = np.zeros(len(sel))
    n = zeros.copy()
    sx, cx, sy, cy, sxy, cxy, sx2, cx2 = (zeros.copy() for _ in range(8))
    init_y = ri.vals[wl]
    const_y = np.ones(len(sel), bool)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for _k, act, v in _positions(wl, wc, ri):
            t = ri.ts[np.where(act, wl + _k, 0)]
            const_y &= ~act | (v == init_y)
            x = (t - base) / 1e3
            n = np.where(act, n + 1, n)
            nsx, ncx = _kahan_inc(x, sx, cx)
            nsy, ncy = _kahan_inc(v, sy, cy)
            nsxy, ncxy = _kahan_inc(x * v, sxy, cxy)
            nsx2, ncx2 = _kahan_inc(x * x, sx2, cx2)
            sx, cx = np.where(act, nsx, sx), np.where(act, ncx, cx)
            sy, cy = np.where(act, nsy, sy), np.where(act, ncy, cy)
            sxy, cxy = np.where(act, nsxy, sxy), np.where(act, ncxy, cxy)
            sx2, cx2 = np.where(act, nsx2, sx2), np.where(act, ncx2, cx2)
        sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
        cov = sxy - sx * sy / n
        var = sx2 - sx * sx / n
        s = cov / var
        i = sy / n - s * sx / n
        inf_y = np.isinf(init_y)
        s = np.where(const_y, np.where(inf_y, np.nan, 0.0), s)
        i = np.where(const_y, np.where(inf_y, np.nan, init_y), i)
    slope.ravel()[sel] = s
    icpt.ravel()[sel] = i
    return slope, icpt, ok


def deriv(ri: RangeInput) -> Vec:
    slope, _i, ok = _regression(ri, None)
    return _output(ri, slope, ok)


def predict_linear(ri: RangeInput, seconds: np.ndarray) -> Vec:
    at = ri.step_times if ri.step_times is not None else ri.ends
    slope, icpt, ok = _regression(ri, at)
    with np.errstate(invalid="ignore", over="ignore"):
        return _output(ri, slope * seconds[None, :] + icpt, ok)


RANGE_FUNCTIONS: dict[str, Callable[[RangeInput], Vec]] = {
    "rate": lambda ri: extrapolated_rate(ri, counter=True, per_second=True),
    "increase": lambda ri: extrapolated_rate(ri, counter=True, per_second=False),
    "delta": lambda ri: extrapolated_rate(ri, counter=False, per_second=False),
    "irate": lambda ri: instant_rate(ri, per_second=True),
    "idelta": lambda ri: instant_rate(ri, per_second=False),
    "count_over_time": count_over_time,
    "present_over_time": present_over_time,
    "last_over_time": last_over_time,
    "sum_over_time": sum_over_time,
    "avg_over_time": avg_over_time,
    "min_over_time": min_over_time,
    "max_over_time": max_over_time,
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "changes": changes,
    "resets": resets,
    "deriv": deriv,
}
