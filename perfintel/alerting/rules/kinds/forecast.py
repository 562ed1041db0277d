"""``kind: threshold_approaching`` — the forecast's band crosses a threshold within a horizon.

::

    - alert: LatencyWillBreachSLO
      kind: threshold_approaching
      expr: histogram_quantile(0.99, sum by (le, service) (rate(http_duration_seconds_bucket[5m])))
      threshold: 0.5
      direction: above        # or below (e.g. free space, throughput)
      within: 6h              # the horizon
      level: 80               # the band: the central 80 % prediction interval (P10-P90)
      # history: 7d  step: 1m   default: from the horizon (see below)
      # min_history: 1d       # fewer points of history: no judgement
      for: 15m

``expr`` is evaluated over the history on a regular grid (the horizon picks
step and history as the forecast API does: up to 6 h → 1 min steps over
7 days; up to 3 days → 5 min over 28 days; longer → 1 h over a year; either
can be set) and each series is forecast with perfintel's automatic
forecaster (``perfintel.analysis.forecast``: a backtest-chosen ensemble
with conformal prediction intervals, through
``perfintel.performance.forecasting``).

The rule triggers when the band's edge on the threshold's side crosses
within the horizon: for ``level: 80``, when there is at least a 10 % chance
(by the calibrated interval) that the series is beyond the threshold at
some step — and only at a step the series could reach: getting from its
value now to the threshold by then must not take a faster rise (fall, for
``below``) than the series has ever made over a span that long in its
history. A model that extrapolates wildly (an autoregression right after a
large drop, say) cannot raise an alert on its own. The alert says when: ``earliest`` is where the band's edge
crosses (P10), ``expected`` where the mean does (P50), ``latest`` where the
far edge does (P90), ``None`` beyond the horizon; ``confidence`` is the
largest probability over the horizon of being beyond the threshold, read
off the forecast's quantiles (mean and every interval's bounds, a normal
shape between them).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from perfintel.alerting.rules.kinds.base import (
    Finding,
    KindContext,
    KindParams,
    PromDuration,
    crossing_annotations,
    crossing_explanation,
    normal_cdf,
    normal_ppf,
    reachable,
    value_text,
    without_name,
)
from perfintel.analysis.forecast import ForecastResult
from perfintel.performance.forecasting import forecast_history
from perfintel.performance.history import History, HistorySet, choose_window
from perfintel.query.promql.engine import Series


class ThresholdParams(KindParams):
    expr: str
    threshold: float
    direction: Literal["above", "below"] = "above"
    within: PromDuration = 6 * 3600.0
    level: int = Field(80, gt=50, lt=100)
    history: PromDuration | None = None
    step: PromDuration | None = None
    min_history: PromDuration = 86400.0
    max_series: int = Field(200, gt=0)

    def describe(self) -> str:
        op = ">=" if self.direction == "above" else "<="
        return f"forecast({self.expr}) {op} {self.threshold:g} within {self.within:g}s (P{(100 - self.level) // 2} band)"


def history_set(series: list[Series], step_ms: int, first_ms: int, last_ms: int) -> HistorySet:
    """Range-query results on the grid ``first_ms..last_ms`` (NaN where a step has no point)."""
    n = (last_ms - first_ms) // step_ms + 1
    out = []
    for s in series:
        idx = (np.asarray(s.timestamps) - first_ms) // step_ms
        keep = (idx >= 0) & (idx < n)
        if not keep.any():
            continue
        values = np.full(n, np.nan)
        values[idx[keep]] = np.asarray(s.values)[keep]
        lead = int(idx[keep].min())
        grid = first_ms + step_ms * np.arange(lead, n, dtype=np.int64)
        out.append(History(s.labels, grid, values[lead:]))
    return HistorySet(step_ms, "promql", first_ms, last_ms, out)


def quantile_knots(r: ForecastResult) -> tuple[np.ndarray, np.ndarray]:
    """``(q, values)``: the forecast's quantiles per step, ``values`` of shape ``(k, h)``."""
    qs = [0.5]
    rows = [np.asarray(r.mean, dtype=np.float64)]
    for level in sorted(r.lo):
        a = (100 - level) / 200
        qs += [a, 1 - a]
        rows += [np.asarray(r.lo[level], np.float64), np.asarray(r.hi[level], np.float64)]
    order = np.argsort(qs)
    values = np.vstack([rows[i] for i in order])
    return np.asarray(qs)[order], np.maximum.accumulate(values, axis=0)


def exceedance(r: ForecastResult, threshold: float) -> np.ndarray:
    """P(value >= threshold) per forecast step, from the quantiles (normal shape between them)."""
    qs, values = quantile_knots(r)
    z = np.array([normal_ppf(q) for q in qs])
    h = values.shape[1]
    out = np.empty(h)
    for j in range(h):
        v = values[:, j]
        if threshold <= v[0] or threshold >= v[-1]:
            # beyond the outermost quantiles: extend the outer segment (normal tails)
            a, b = (0, 1) if threshold <= v[0] else (-2, -1)
            dv = v[b] - v[a]
            zt = (
                z[a] + (threshold - v[a]) * (z[b] - z[a]) / dv
                if dv > 0
                else (-np.inf if threshold < v[0] else np.inf)
            )
        else:
            zt = float(np.interp(threshold, v, z))
        out[j] = 1.0 - float(normal_cdf(zt))
    return out


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


class ThresholdKind:
    name = "threshold_approaching"
    params = ThresholdParams

    def expressions(self, params: ThresholdParams) -> list[tuple[str, str]]:
        return [("expr", params.expr)]

    def evaluate(self, params: ThresholdParams, ctx: KindContext) -> list[Finding]:
        window = choose_window(
            int(params.within * 1000),
            step_ms=None if params.step is None else int(params.step * 1000),
            history_ms=None if params.history is None else int(params.history * 1000),
        )
        step = window.step_ms
        last = ctx.time_ms - ctx.time_ms % step
        first = last - (window.history_points - 1) * step
        series = ctx.range(
            params.expr, (last - first) / 1000, step / 1000, max_series=params.max_series
        )
        hist = history_set(series, step, first, last)
        need = params.min_history * 1000 / step
        hist.series = [h for h in hist.series if np.isfinite(h.values).sum() >= need]
        if not hist.series:
            return []
        levels = sorted({params.level, 95 if params.level < 95 else 99})
        report = forecast_history(hist, window, levels)
        out = []
        for h, f in zip(hist.series, report.series, strict=True):
            if np.all(np.isfinite(f.result.mean)):
                out.append(self._finding(params, h, f.result, f.timestamps / 1000.0, ctx.now_s))
        return out

    def _finding(
        self, params: ThresholdParams, h: History, r: ForecastResult, times: np.ndarray, now: float
    ) -> Finding:
        above = params.direction == "above"
        thr = params.threshold
        lo, hi = r.lo[params.level], r.hi[params.level]
        near, far = (hi, lo) if above else (lo, hi)

        def beyond(x: np.ndarray) -> np.ndarray:
            return np.asarray(x >= thr) if above else np.asarray(x <= thr)

        def at(i: int | None) -> float | None:
            return None if i is None else float(times[i])

        finite = h.values[np.isfinite(h.values)]
        now_value = float(finite[-1])
        reach = reachable(finite, thr - now_value, len(times), above)
        i_early = _first(beyond(near) & reach)
        i_mean, i_late = _first(beyond(r.mean) & reach), _first(beyond(far) & reach)
        p = exceedance(r, thr) if above else 1.0 - exceedance(r, thr)
        already = bool(beyond(np.array([now_value]))[0])
        band_i = next((i for i in (i_mean, i_early) if i is not None), len(times) - 1)
        tail = (100 - params.level) // 2
        expl = crossing_explanation(
            kind=self.name,
            now=now,
            value=now_value,
            threshold=thr,
            expected=now if already else at(i_mean),
            earliest=now if already else at(i_early),
            latest=now if already else at(i_late),
            interval=f"P{tail}-P{100 - tail}",
            confidence=1.0 if already else float(p.max()),
            band={
                "level": params.level,
                "at": float(times[band_i]),
                "mean": float(r.mean[band_i]),
                "lower": float(lo[band_i]),
                "upper": float(hi[band_i]),
            },
            direction=params.direction,
            horizon=params.within,
            model=r.model,
        )
        what = f"{'rises above' if above else 'falls below'} {value_text(thr)}"
        return Finding(
            without_name(h.labels),
            now_value,
            trigger=already or i_early is not None,
            explanation=expl,
            annotations=crossing_annotations(what, expl),
        )


KIND = ThresholdKind()
