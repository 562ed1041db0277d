"""What moved together, and which moved first: pairwise correlation of many series at once.

Arrays in, a :class:`CorrelationResult` out. Two series that merely share a
daily cycle (or a trend) are correlated in their raw values whatever else they
do, so nothing is computed on raw values. Per series, in order:

1. **Grid values**: counters become their increase per step, gaps are filled
   (:func:`perfintel.analysis.signals.as_matrix`).
2. **De-seasonalise**: the daily and weekly per-phase median profiles are
   subtracted when the window holds two cycles of them
   (:func:`~perfintel.analysis.signals.remove_seasonal_profiles`).
3. **Difference**: first differences remove the level, a trend and most of a
   seasonal shape too short-lived to be profiled (one day of one-minute data).
4. **Prewhiten**: an AR(``p``) model fitted by Yule–Walker to each differenced
   series is removed from it. What is left is close to white noise, so the
   cross-correlation of two residual series at lag ``k`` has variance close to
   ``1/n`` under independence and its peak marks the lag at which one series
   responds to the other, not a smear of both series' own memory.

Pearson and Spearman correlation are reported on the de-seasonalised,
differenced data (step 3) at the best lag; the **best lag** is the lag in
``[-max_lag, max_lag]`` with the largest absolute cross-correlation of the
prewhitened residuals (step 4), computed for every pair with one FFT per series
and one inverse FFT per pair (vectorised, chunked).

Significance
------------
Under independence the residual cross-correlation at one lag is normal with
variance ``(1 + 2 Σ_h ρ_a(h) ρ_b(h)) / n`` (Bartlett's formula with each
residual's remaining autocorrelation ``ρ``, up to ``BARTLETT_LAGS``; this is
the *effective sample size* correction); searching ``2 max_lag + 1`` lags for
the largest is accounted for by Šidák's correction, and the p-values of all
pairs are controlled for their number by Benjamini–Hochberg: a pair is
*significant* when its BH q-value is at most ``alpha``.

Leaders
-------
Series are ranked by how much they lead: the sum of the absolute
cross-correlations of the significant pairs in which they move first (best
lag > 0) minus those in which they follow. A cause that moves ``k`` effects
ranks above each effect, which follows the cause and leads only the effects
that respond later, and more weakly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perfintel.errors import BadInputError
from perfintel.model import LabelSet

from .forecast.seasons import season_lengths_for
from .signals import SeriesInput, as_matrix_with_reasons, remove_seasonal_profiles

#: order of the prewhitening autoregression (shortened for short series)
AR_ORDER = 8
#: fewest residual autocorrelation lags in Bartlett's variance formula (else a quarter of the points)
BARTLETT_LAGS = 20
#: fewest differenced points for a pair to be tested
MIN_OVERLAP = 16
#: default false-discovery rate of "significant"
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Pair:
    """Two series ``a < b`` (indices into the input).

    ``lag`` is in steps: positive when ``b`` follows ``a`` (``a`` moved
    first), negative when ``b`` moved first. ``xcorr`` is the cross-correlation
    of the prewhitened residuals at that lag; ``pearson`` and ``spearman`` are
    on the de-seasonalised, differenced values at the same lag.
    """

    a: int
    b: int
    lag: int
    xcorr: float
    pearson: float
    spearman: float
    p_value: float
    q_value: float
    significant: bool


@dataclass(frozen=True)
class Leader:
    """One series' lead score (see the module docstring) and its significant partners."""

    index: int
    score: float
    leads: int
    follows: int
    together: int


@dataclass(frozen=True)
class PairTable:
    """Every tested pair as columns (one entry per pair), most significant first.

    Columns as the fields of :class:`Pair`; :meth:`rows` materialises them.
    """

    a: np.ndarray
    b: np.ndarray
    lag: np.ndarray
    xcorr: np.ndarray
    pearson: np.ndarray
    spearman: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    significant: np.ndarray

    def __len__(self) -> int:
        return int(self.a.size)

    def rows(self, limit: int | None = None, *, significant_only: bool = False) -> list[Pair]:
        """The first ``limit`` pairs (all when ``None``) as :class:`Pair` objects."""
        idx = np.flatnonzero(self.significant) if significant_only else np.arange(len(self))
        if limit is not None:
            idx = idx[:limit]
        return [
            Pair(
                int(self.a[k]),
                int(self.b[k]),
                int(self.lag[k]),
                float(self.xcorr[k]),
                float(self.pearson[k]),
                float(self.spearman[k]),
                float(self.p_value[k]),
                float(self.q_value[k]),
                bool(self.significant[k]),
            )
            for k in idx.tolist()
        ]


@dataclass(frozen=True)
class CorrelationResult:
    """Every pair among the usable series, most significant first, and the leader ranking.

    ``xcorr`` and ``lag`` are ``n × n`` matrices (``lag[i, j]``: steps by which
    ``j`` follows ``i``); a usable series correlates 1 with itself at lag 0, the
    rows of unusable series are 0.
    ``usable[i]`` is ``False`` for series too short or constant to analyse, and
    ``reasons[i]`` says which (``""`` for a usable one).
    """

    pairs: PairTable
    leaders: list[Leader]
    xcorr: np.ndarray
    lag: np.ndarray
    usable: np.ndarray
    max_lag: int
    points: int
    alpha: float
    seasons: tuple[int, ...]
    reasons: tuple[str, ...] = ()

    @property
    def why_no_pairs(self) -> str | None:
        """Why no pair was tested, in words (``None`` when some were)."""
        if len(self.pairs):
            return None
        good = int(self.usable.sum())
        if good < 2:
            return f"{good} of {self.usable.size} series can be analysed: a pair needs two"
        if self.points < MIN_OVERLAP:
            return f"the range holds {self.points} steps: a pair needs {MIN_OVERLAP}"
        return None


@dataclass(frozen=True)
class Correlated:
    """A candidate that moved with a target: ``lag`` > 0 when it moved after the target."""

    index: int
    labels: LabelSet
    lag: int
    xcorr: float
    pearson: float
    spearman: float
    q_value: float
    significant: bool


# -- preparation ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    x: np.ndarray  # de-seasonalised rows
    d: np.ndarray  # their differences
    usable: np.ndarray
    seasons: tuple[int, ...]
    reasons: tuple[str, ...]
    #: per difference, whether both its ends were samples (not filled in): what a pair's
    #: significance may count (a series of minutes, carried over an hour, is minutes of data)
    seen: np.ndarray


def _prepare(
    series: Sequence[SeriesInput], step_seconds: float | None, seasons: Sequence[int] | None
) -> _Prepared:
    x, reasons = as_matrix_with_reasons(series)
    usable = np.array([not r for r in reasons], dtype=bool)
    t = x.shape[1]
    if seasons is None:
        seasons = season_lengths_for(step_seconds, t) if step_seconds else []
    used = tuple(int(m) for m in seasons if t >= 2 * int(m) >= 4)
    if used:
        x = remove_seasonal_profiles(x, used)
    d = np.diff(x, axis=1) if t >= 2 else np.zeros((x.shape[0], 0))
    # differencing may leave a constant row (a pure ramp): nothing left to correlate
    usable = usable & (np.ptp(d, axis=1) > 0 if d.shape[1] else False)
    why = tuple(
        r or ("" if u else "a straight line: nothing left once differenced")
        for r, u in zip(reasons, usable, strict=True)
    )
    sampled = np.array([np.isfinite(np.asarray(s.values, dtype=np.float64)) for s in series])
    seen = sampled[:, 1:] & sampled[:, :-1] if t >= 2 else np.zeros((len(series), 0), bool)
    return _Prepared(x, d, usable, used, why, seen)


def high_pass(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Rows minus a smooth local trend: a Savitzky–Golay quadratic over ``slow_window`` steps.

    What a window shorter than two seasons cannot profile (one day of a daily
    cycle, a slow drift) is shared by many series and is not co-movement; a
    local quadratic fitted over a span longer than four times the largest lag
    follows such a curve closely and leaves a step, a spike or a wiggle (and
    every lag of interest) almost untouched.
    """
    t = x.shape[1]
    w = slow_window(t, max_lag)
    if w < 5 or w > t:
        return x
    from scipy.signal import savgol_filter

    return np.asarray(x - savgol_filter(x, w, 2, axis=1, mode="interp"))


def slow_window(t: int, max_lag: int) -> int:
    """Odd span of :func:`high_pass`: ``max(4 max_lag + 1, t / 16)``, at most ``t``."""
    w = max(4 * max_lag + 1, t // 16)
    w = min(w, t if t % 2 else t - 1)
    return int(w if w % 2 else w - 1)


def autocorrelations(x: np.ndarray, lags: int) -> np.ndarray:
    """Autocorrelations ``1..lags`` of each row (zeros for a constant row)."""
    acf = _autocov(x, lags)
    return np.divide(acf[:, 1:], acf[:, :1], out=np.zeros_like(acf[:, 1:]), where=acf[:, :1] > 0)


def _autocov(x: np.ndarray, lags: int) -> np.ndarray:
    """Biased autocovariances ``0..lags`` of each (centred) row, by FFT."""
    t = x.shape[1]
    nfft = 1 << int(np.ceil(np.log2(max(2 * t, 2))))
    f = np.fft.rfft(x, nfft, axis=1)
    r = np.fft.irfft(f * np.conj(f), nfft, axis=1)[:, : lags + 1]
    return np.asarray(r / t)


def prewhiten(x: np.ndarray, order: int = AR_ORDER) -> np.ndarray:
    """Standardised residuals of an AR(``order``) least-squares fit to each row.

    The fit is on the rows as given (centred), by ordinary least squares with a
    tiny ridge, so a random-walk-like row gets a coefficient sum near one (it is
    differenced) and a stationary one keeps its level (it is not
    over-differenced: an autoregression fitted to over-differenced noise
    re-integrates it and amplifies every slow component, a shared daily cycle
    included). The first ``order`` residuals (no full history) are zero; each
    output row has mean 0 and unit variance (all-zero rows stay zero).
    """
    n, t = x.shape
    x = x - x.mean(axis=1, keepdims=True)
    p = int(min(order, max(0, t // 10)))
    e = x.copy()
    if p > 0:
        y = x[:, p:]
        lagged = [x[:, p - k : t - k] for k in range(1, p + 1)]
        xtx = np.empty((n, p, p))
        xty = np.empty((n, p))
        for a in range(p):
            xty[:, a] = np.einsum("ij,ij->i", lagged[a], y)
            for b in range(a, p):
                xtx[:, a, b] = xtx[:, b, a] = np.einsum("ij,ij->i", lagged[a], lagged[b])
        ridge = 1e-8 * np.trace(xtx, axis1=1, axis2=2) / p + 1e-300
        xtx += np.eye(p)[None] * ridge[:, None, None]
        phi = np.linalg.solve(xtx, xty[:, :, None])[:, :, 0]
        for k in range(1, p + 1):
            e[:, p:] -= phi[:, k - 1 : k] * lagged[k - 1]
        e[:, :p] = 0.0
    sd = e.std(axis=1, keepdims=True)
    return np.divide(e - e.mean(axis=1, keepdims=True), sd, out=np.zeros_like(e), where=sd > 0)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average-free ranks along rows, standardised (ties broken by position: fast, close enough)."""
    r = np.argsort(np.argsort(x, axis=1, kind="stable"), axis=1).astype(np.float64)
    return _standardise(r)


def _standardise(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(axis=1, keepdims=True)
    sd = c.std(axis=1, keepdims=True)
    return np.divide(c, sd, out=np.zeros_like(c), where=sd > 0)


# -- the pair computations ---------------------------------------------------------------


def _window_sums(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums of each row and of its squares (``[:, k]``: the first ``k`` points)."""
    zero = np.zeros((z.shape[0], 1))
    return np.hstack([zero, np.cumsum(z, axis=1)]), np.hstack([zero, np.cumsum(z * z, axis=1)])


def _overlap_corr(
    sums: tuple[np.ndarray, np.ndarray],
    ia: np.ndarray,
    ib: np.ndarray,
    lag: np.ndarray,
    cross: np.ndarray,
) -> np.ndarray:
    """Pearson correlation over the overlap of ``a(t)`` and ``b(t + lag)`` from its cross sum."""
    s1, s2 = sums
    t = s1.shape[1] - 1
    pos = lag >= 0
    a_lo = np.where(pos, 0, -lag)
    a_hi = np.where(pos, t - lag, t)
    b_lo, b_hi = a_lo + lag, a_hi + lag
    n = (a_hi - a_lo).astype(np.float64)
    sa = s1[ia, a_hi] - s1[ia, a_lo]
    sb = s1[ib, b_hi] - s1[ib, b_lo]
    saa = s2[ia, a_hi] - s2[ia, a_lo]
    sbb = s2[ib, b_hi] - s2[ib, b_lo]
    num = cross - sa * sb / n
    den = np.sqrt(np.maximum(saa - sa * sa / n, 0.0) * np.maximum(sbb - sb * sb / n, 0.0))
    return np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), -1.0, 1.0)


def _pair_stats(
    x: np.ndarray,
    d: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    max_lag: int,
    seen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lag, xcorr, pearson, spearman, p_value)`` of each pair ``(ia[k], ib[k])`` of rows.

    ``seen`` (rows × differences) marks the differences between two samples; a pair's
    significance counts the steps both saw (all when ``None``), and a pair that saw
    fewer than ``MIN_OVERLAP`` together is not significant (p = 1).

    ``ia`` must be sorted. The lag search runs in single precision on the
    residual spectra, one row against all its partners per inverse FFT; the
    cross sums of the differenced values and their ranks at the chosen lag
    come from the same spectra evaluated at that one lag.
    """
    from scipy.fft import irfft, next_fast_len, rfft  # lazy: scipy is heavy at start-up

    t = d.shape[1]
    e = prewhiten(high_pass(x, max_lag))[:, 1:]  # aligned with the differences
    z = _standardise(d)
    r = _ranks(d)
    nfft = next_fast_len(t + max_lag + 1, real=True)
    spec_e = rfft(e.astype(np.float32), nfft, axis=1)
    spec_z = rfft(z.astype(np.float32), nfft, axis=1)
    spec_r = rfft(r.astype(np.float32), nfft, axis=1)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    cols = np.r_[np.arange(0, max_lag + 1), nfft + np.arange(-max_lag, 0)]
    # weights of the half spectrum in the inverse transform at one lag
    half = spec_z.shape[1]
    w = np.full(half, 2.0)
    w[0] = 1.0
    if nfft % 2 == 0:
        w[-1] = 1.0
    # the inverse transform at each searched lag, weights included
    twiddles = (w * np.exp(2j * np.pi * np.outer(lags, np.arange(half)) / nfft) / nfft).astype(
        np.complex64
    )
    lag = np.zeros(ia.size, dtype=np.int64)
    xc = np.zeros(ia.size)
    cross_z = np.zeros(ia.size)
    cross_r = np.zeros(ia.size)
    starts = np.flatnonzero(np.r_[True, ia[1:] != ia[:-1]])
    for s, e_ in zip(starts, np.r_[starts[1:], ia.size], strict=True):
        i, js = int(ia[s]), ib[s:e_]
        cc = irfft(spec_e[js] * np.conj(spec_e[i]), nfft, axis=1)[:, cols]
        k = np.argmax(np.abs(cc), axis=1)
        lag[s:e_] = lags[k]
        xc[s:e_] = cc[np.arange(k.size), k] / t
        tw = twiddles[k]
        cross_z[s:e_] = np.einsum("jf,jf->j", spec_z[js], tw * np.conj(spec_z[i])).real
        cross_r[s:e_] = np.einsum("jf,jf->j", spec_r[js], tw * np.conj(spec_r[i])).real
    pearson = _overlap_corr(_window_sums(z), ia, ib, lag, cross_z)
    spearman = _overlap_corr(_window_sums(r), ia, ib, lag, cross_r)
    acf = autocorrelations(e, max(BARTLETT_LAGS, t // 4))
    inflation = 1.0 + 2.0 * (acf @ acf.T)[ia, ib]
    n: np.ndarray | int = t
    if seen is not None and not seen.all():
        both = seen.astype(np.float32)
        n = np.rint(both @ both.T)[ia, ib].astype(np.int64)  # steps both saw
    p = p_values(xc, inflation, n, 2 * max_lag + 1)
    if isinstance(n, np.ndarray):
        p[n < MIN_OVERLAP] = 1.0
    return lag, xc, pearson, spearman, p


def p_values(r: np.ndarray, inflation: np.ndarray, t: int | np.ndarray, lags: int) -> np.ndarray:
    """Two-sided p-values of the largest of ``lags`` cross-correlations (Bartlett + Šidák);
    ``t``: the steps each pair saw (one for all, or one per pair)."""
    from scipy.special import ndtr

    n_eff = t / np.maximum(inflation, 1.0)
    z = np.abs(r) * np.sqrt(n_eff)
    p1 = 2.0 * ndtr(-z)
    # 1 - (1 - p1)^lags without cancellation for tiny p1
    return np.asarray(-np.expm1(lags * np.log1p(-np.minimum(p1, 1.0 - 1e-16))))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH q-values (the smallest false-discovery rate at which each test is rejected)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def link_p_values(base: np.ndarray, max_lag: int) -> np.ndarray:
    """``P[a, b]``: p-value of "``a``'s movements show up in ``b`` ``0..max_lag`` steps later".

    Over the baseline, each row is high-passed (a slow curve such as a daily
    cycle is shared by everything and is no dependency) and prewhitened (an
    autoregression removed, so its own memory does not smear the
    cross-correlation); the largest |cross-correlation| of ``a`` leading ``b``
    by ``0..max_lag`` gets a p-value from Bartlett's variance (each residual's
    remaining autocorrelation) with Šidák's correction for the lags searched —
    the machinery of :func:`correlate`. The diagonal is 0.
    """
    n, t = base.shape
    lags = min(max_lag, t - 8)
    if n == 0 or lags < 0:
        return np.ones((n, n)) - np.eye(n)
    e = prewhiten(high_pass(base, max_lag))
    best = np.zeros((n, n))
    for k in range(lags + 1):
        c = e[:, : t - k] @ e[:, k:].T / t
        best = np.where(np.abs(c) > np.abs(best), c, best)
    acf = autocorrelations(e, max(BARTLETT_LAGS, t // 4))
    p = p_values(best, 1.0 + 2.0 * (acf @ acf.T), t, lags + 1)
    np.fill_diagonal(p, 0.0)
    return p


def significant_links(base: np.ndarray, max_lag: int, fdr: float) -> np.ndarray:
    """``S[a, b]``: whether ``a`` leads ``b`` significantly (:func:`link_p_values`), the
    off-diagonal pairs controlled for their number by Benjamini–Hochberg at ``fdr``: a test,
    not a threshold, so two unrelated series are linked about as often as ``fdr`` allows and a
    series coupled to nothing explains nothing across entities. The diagonal is ``True``."""
    n = base.shape[0]
    out = np.eye(n, dtype=bool)
    if n < 2:
        return out
    off = ~out
    out[off] = benjamini_hochberg(link_p_values(base, max_lag)[off]) <= fdr
    return out


def _check(max_lag: int, alpha: float) -> None:
    if max_lag < 0:
        raise BadInputError(f"invalid parameter 'max_lag': must be at least 0, got {max_lag}")
    if not 0 < alpha < 1:
        raise BadInputError(f"invalid parameter 'alpha': must be in (0, 1), got {alpha}")


def _max_lag(max_lag: int, t: int) -> int:
    return int(max(0, min(max_lag, (t - MIN_OVERLAP) // 2)))


# -- public functions ----------------------------------------------------------------------


def correlate(
    series: Sequence[SeriesInput],
    *,
    step_seconds: float | None = None,
    max_lag: int = 30,
    alpha: float = DEFAULT_ALPHA,
    season_lengths: Sequence[int] | None = None,
) -> CorrelationResult:
    """Every pair of ``series`` (see the module docstring).

    ``step_seconds`` is the grid's step (it gives the daily and weekly season
    lengths unless ``season_lengths`` is given); ``max_lag`` bounds the lag
    search in steps; ``alpha`` is the false-discovery rate of ``significant``.

    >>> import numpy as np
    >>> from perfintel.model import label_set
    >>> rng = np.random.default_rng(1)
    >>> cause = np.cumsum(rng.normal(size=600))
    >>> effect = np.r_[np.zeros(3), cause[:-3]] + rng.normal(0, 0.3, 600)
    >>> res = correlate([SeriesInput(label_set({"__name__": n}), v)
    ...                  for n, v in (("cause", cause), ("effect", effect))], max_lag=10)
    >>> p = res.pairs.rows(1)[0]
    >>> (p.a, p.b, p.lag, p.significant), res.leaders[0].index
    ((0, 1, 3, True), 0)
    """
    _check(max_lag, alpha)
    prep = _prepare(series, step_seconds, season_lengths)
    x, d, usable, used, why = prep.x, prep.d, prep.usable, prep.seasons, prep.reasons
    n, t = d.shape
    lag_m = np.zeros((n, n), dtype=np.int64)
    xc_m = np.zeros((n, n))
    good = np.flatnonzero(usable)
    xc_m[good, good] = 1.0
    ml = _max_lag(max_lag, t)
    if good.size < 2 or t < MIN_OVERLAP:
        leaders = [Leader(int(i), 0.0, 0, 0, 0) for i in good]
        return CorrelationResult(
            _table(*(np.zeros(0),) * 9), leaders, xc_m, lag_m, usable, ml, t, alpha, used, why
        )
    iu, ju = np.triu_indices(good.size, k=1)
    ia, ib = good[iu], good[ju]
    lag, xc, pe, sp, p = _pair_stats(x, d, ia, ib, ml, prep.seen)
    q = benjamini_hochberg(p)
    sig = q <= alpha
    lag_m[ia, ib], lag_m[ib, ia] = lag, -lag
    xc_m[ia, ib] = xc_m[ib, ia] = xc
    o = np.lexsort((-np.abs(xc), q))
    table = _table(ia[o], ib[o], lag[o], xc[o], pe[o], sp[o], p[o], q[o], sig[o])
    leaders = _leaders(good, ia, ib, lag, xc, sig)
    return CorrelationResult(table, leaders, xc_m, lag_m, usable, ml, t, alpha, used, why)


def _table(*cols: np.ndarray) -> PairTable:
    a, b, lag, xc, pe, sp, p, q, sig = cols
    return PairTable(
        a.astype(np.int64),
        b.astype(np.int64),
        lag.astype(np.int64),
        xc.astype(np.float64),
        pe.astype(np.float64),
        sp.astype(np.float64),
        p.astype(np.float64),
        q.astype(np.float64),
        sig.astype(bool),
    )


def _leaders(
    good: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    lag: np.ndarray,
    xc: np.ndarray,
    sig: np.ndarray,
) -> list[Leader]:
    score: dict[int, float] = {int(i): 0.0 for i in good}
    leads = dict.fromkeys(score, 0)
    follows = dict.fromkeys(score, 0)
    together = dict.fromkeys(score, 0)
    for k in np.flatnonzero(sig):
        a, b, w = int(ia[k]), int(ib[k]), abs(float(xc[k]))
        if lag[k] > 0:
            first, second = a, b
        elif lag[k] < 0:
            first, second = b, a
        else:
            together[a] += 1
            together[b] += 1
            continue
        score[first] += w
        score[second] -= w
        leads[first] += 1
        follows[second] += 1
    ranked = sorted(score, key=lambda i: (-score[i], i))
    return [Leader(i, score[i], leads[i], follows[i], together[i]) for i in ranked]


def moved_with(
    target: SeriesInput,
    candidates: Sequence[SeriesInput],
    window: int | None = None,
    *,
    step_seconds: float | None = None,
    max_lag: int = 30,
    alpha: float = DEFAULT_ALPHA,
    season_lengths: Sequence[int] | None = None,
) -> list[Correlated]:
    """The candidates that moved with ``target``, most significant first.

    Only the target-candidate pairs are tested (BH over ``len(candidates)``
    tests). ``window`` keeps the last ``window`` steps of every series (all
    when ``None``). ``lag`` > 0: the candidate moved after the target; < 0:
    before it. Unusable candidates (too short, constant) are left out; an
    unusable target gives an empty list.
    """
    _check(max_lag, alpha)
    every = [target, *candidates]
    if window is not None:
        if window < 2:
            raise BadInputError(f"invalid parameter 'window': at least 2 steps, got {window}")
        every = [SeriesInput(s.labels, np.asarray(s.values)[-window:], s.counter) for s in every]
    prep = _prepare(every, step_seconds, season_lengths)
    x, d, usable = prep.x, prep.d, prep.usable
    t = d.shape[1]
    if not usable[0] or t < MIN_OVERLAP:
        return []
    ib = np.flatnonzero(usable[1:]) + 1
    if ib.size == 0:
        return []
    ia = np.zeros(ib.size, dtype=np.int64)
    lag, xc, pe, sp, p = _pair_stats(x, d, ia, ib, _max_lag(max_lag, t), prep.seen)
    q = benjamini_hochberg(p)
    order = np.lexsort((-np.abs(xc), q))
    return [
        Correlated(
            int(ib[k]) - 1,
            candidates[int(ib[k]) - 1].labels,
            int(lag[k]),
            float(xc[k]),
            float(pe[k]),
            float(sp[k]),
            float(q[k]),
            bool(q[k] <= alpha),
        )
        for k in order
    ]
