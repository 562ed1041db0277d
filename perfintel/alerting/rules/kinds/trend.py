"""``kind: trend_degradation`` — a significant adverse change of level or slope.

::

    - alert: LatencyCreepingUp
      kind: trend_degradation
      expr: histogram_quantile(0.95, sum by (le, service) (rate(http_duration_seconds_bucket[5m])))
      direction: increase     # adverse direction (decrease: throughput, success ratio)
      window: 1h              # the recent window judged ...
      baseline: 1d            # ... against the windows of this stretch before it
      season: 1d              # optional: compare with the same time of earlier days instead
      step: 1m
      min_change: 0.1         # and only if the change is at least 10 % of the baseline level
      significance: 0.001     # false-alarm probability per evaluation (see below)
      threshold: 0.5          # optional: when would the new trend cross this?

The test
--------
The baseline is cut into ``K`` windows as long as the recent one (``K =
baseline / window`` consecutive windows before the recent one, or with
``season`` the ``K = baseline / season`` windows at the same phase of earlier
seasons). Each window is summarised by its mean and its least-squares
slope. If nothing changed, the recent window's mean and slope are draws from
the same distribution as the baseline windows'; for a Gaussian that makes

    t = (x_recent - mean(x_baseline)) / (sd(x_baseline) * sqrt(1 + 1/K))

Student-t with ``K - 1`` degrees of freedom (a prediction-interval test).
Summarising whole windows absorbs autocorrelation inside them, and the
window-to-window spread (day-to-day variation, with ``season``) is part of
the null, so neither inflates the false-alarm rate. Level and slope are each
tested one-sided (adverse direction) at ``significance / 2``: by Bonferroni,
**the probability that an evaluation raises a false alarm when nothing
changed is at most ``significance``** (assuming window summaries independent
and roughly normal; ``tests/alerting/test_kinds.py`` measures it on AR(1)
noise). A significant change must also be large: at least ``min_change``
of the baseline level (for the slope: its change over one window).

The explanation gives the change (level and slope, baseline and recent),
the p-value (``confidence`` = 1 - p), when the change started (the CUSUM
minimum before the recent window's deviation) and, with ``threshold``, when
the recent trend reaches it: ``expected`` from the recent slope, ``earliest``
and ``latest`` from the slope ± 1.28 baseline standard deviations (P10-P90).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import stats

from perfintel.alerting.rules.kinds.base import (
    Finding,
    KindContext,
    KindParams,
    PromDuration,
    crossing_annotations,
    crossing_explanation,
    short_duration,
    value_text,
    without_name,
)

Z90 = 1.2815515655446004


class TrendParams(KindParams):
    expr: str
    direction: Literal["increase", "decrease"] = "increase"
    window: PromDuration = 3600.0
    baseline: PromDuration = 86400.0
    season: PromDuration | None = None
    step: PromDuration = 60.0
    min_change: float = Field(0.1, ge=0)
    significance: float = Field(0.001, gt=0, lt=0.5)
    threshold: float | None = None

    @model_validator(mode="after")
    def _windows(self) -> TrendParams:
        if self.window < 4 * self.step:
            raise ValueError("window must hold at least 4 steps")
        k = self.baseline / (self.season or self.window)
        if k < 4:
            raise ValueError(
                "baseline must hold at least 4 windows (or seasons): the test needs their spread"
            )
        if self.season is not None and self.season < self.window:
            raise ValueError("season must not be shorter than window")
        return self

    def describe(self) -> str:
        return f"trend test of {self.expr}: {self.direction} over {self.window:g}s vs {self.baseline:g}s"


@dataclass(frozen=True)
class TrendTest:
    """Result of :func:`trend_test` (``p`` is the Bonferroni-combined one-sided p-value)."""

    p: float
    p_level: float
    p_slope: float
    level_base: float
    level_recent: float
    slope_base: float  # per second
    slope_recent: float
    slope_sd: float
    level_change: float  # relative to |level_base|
    slope_change: float  # change over one window, relative to |level_base|
    windows: int


def window_summary(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean and least-squares slope (per unit of ``t``) of the finite points."""
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return np.nan, np.nan
    tt, yy = t[ok], y[ok]
    tc = tt - tt.mean()
    den = float(np.dot(tc, tc))
    slope = float(np.dot(tc, yy - yy.mean()) / den) if den > 0 else 0.0
    return float(yy.mean()), slope


def trend_test(
    recent: tuple[float, float],
    baseline: list[tuple[float, float]],
    window_s: float,
    increase: bool,
) -> TrendTest | None:
    """The two prediction-interval t-tests of the module docstring (``None``: too few windows)."""
    base = np.array([b for b in baseline if np.isfinite(b[0]) and np.isfinite(b[1])])
    k = len(base)
    if k < 4 or not (np.isfinite(recent[0]) and np.isfinite(recent[1])):
        return None
    sign = 1.0 if increase else -1.0
    means, slopes = base[:, 0], base[:, 1]
    mb, sb = float(means.mean()), float(slopes.mean())
    scale = max(abs(mb), 1e-12)
    # an sd of 0 (a perfectly flat baseline) would make any change "infinitely" significant
    sd_m = max(float(means.std(ddof=1)), 1e-9 * scale)
    sd_s = max(float(slopes.std(ddof=1)), 1e-9 * scale / window_s)
    infl = float(np.sqrt(1 + 1 / k))
    t_level = sign * (recent[0] - mb) / (sd_m * infl)
    t_slope = sign * (recent[1] - sb) / (sd_s * infl)
    p_level = float(stats.t.sf(t_level, k - 1))
    p_slope = float(stats.t.sf(t_slope, k - 1))
    return TrendTest(
        p=min(1.0, 2 * min(p_level, p_slope)),
        p_level=p_level,
        p_slope=p_slope,
        level_base=mb,
        level_recent=recent[0],
        slope_base=sb,
        slope_recent=recent[1],
        slope_sd=sd_s,
        level_change=sign * (recent[0] - mb) / scale,
        slope_change=sign * (recent[1] - sb) * window_s / scale,
        windows=k,
    )


def change_start(t: np.ndarray, y: np.ndarray, level: float, increase: bool) -> float | None:
    """Where the adverse excursion from ``level`` began: the CUSUM's last minimum."""
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    dev = (y[ok] - level) * (1 if increase else -1)
    c = np.cumsum(dev)
    return float(t[ok][int(np.argmin(c))])


class TrendKind:
    name = "trend_degradation"
    params = TrendParams

    def expressions(self, params: TrendParams) -> list[tuple[str, str]]:
        return [("expr", params.expr)]

    def evaluate(self, params: TrendParams, ctx: KindContext) -> list[Finding]:
        span = params.baseline + params.window
        series = ctx.range(params.expr, span, params.step)
        now = ctx.now_s
        w = params.window
        increase = params.direction == "increase"
        out = []
        for s in series:
            t = np.asarray(s.timestamps, dtype=np.float64) / 1000.0
            y = np.asarray(s.values, dtype=np.float64)
            end = t[-1] if t.size else now
            recent_mask = t > end - w
            recent = window_summary(t[recent_mask], y[recent_mask])
            period = params.season or w
            k = int(params.baseline // period)
            base = []
            for i in range(1, k + 1):
                hi = end - (i * period if params.season else i * w)
                m = (t > hi - w) & (t <= hi)
                if m.sum() >= max(3, 0.5 * w / params.step):
                    base.append(window_summary(t[m], y[m]))
            res = trend_test(recent, base, w, increase)
            if res is None:
                continue
            alpha = params.significance
            big_level = res.p_level < alpha / 2 and res.level_change >= params.min_change
            big_slope = res.p_slope < alpha / 2 and res.slope_change >= params.min_change
            trigger = big_level or big_slope
            since = change_start(t[t > end - 2 * w], y[t > end - 2 * w], res.level_base, increase)
            expl: dict[str, object] = {
                "kind": self.name,
                "now": now,
                "value": float(y[np.isfinite(y)][-1]) if np.isfinite(y).any() else None,
                "p_value": res.p,
                "confidence": 1.0 - res.p,
                "significance": alpha,
                "level": {"baseline": res.level_base, "recent": res.level_recent},
                "slope_per_hour": {
                    "baseline": res.slope_base * 3600,
                    "recent": res.slope_recent * 3600,
                },
                "change": {"level": res.level_change, "slope": res.slope_change},
                "changed": "level" if big_level else "slope" if big_slope else "",
                "since": since,
                "windows": res.windows,
            }
            annotations = {
                "change": (
                    f"{'level' if big_level else 'slope'} {params.direction} of "
                    f"{100 * max(res.level_change, res.slope_change):.0f}% against the baseline "
                    f"(p = {res.p:.2g}) since {short_duration(max(0.0, now - since)) if since else '?'} ago"
                ),
                "confidence": f"{100 * (1 - res.p):.1f}%",
            }
            if params.threshold is not None:
                cross = self._crossing(params, res, now, increase, expl)
                expl.update(cross)
                annotations.update(
                    crossing_annotations(
                        f"{'rising above' if increase else 'falling below'} {value_text(params.threshold)}",
                        cross,
                    )
                )
            out.append(
                Finding(
                    without_name(s.labels),
                    res.level_change if big_level or not big_slope else res.slope_change,
                    trigger=trigger,
                    explanation=expl,
                    annotations=annotations,
                )
            )
        return out

    def _crossing(
        self,
        params: TrendParams,
        res: TrendTest,
        now: float,
        increase: bool,
        expl: dict[str, object],
    ) -> dict[str, object]:
        thr = float(params.threshold)  # type: ignore[arg-type]
        sign = 1.0 if increase else -1.0
        # the recent window's fitted line, extended from its centre to now
        level_now = res.level_recent + res.slope_recent * params.window / 2
        gap = sign * (thr - level_now)

        def when(slope: float) -> float | None:
            if gap <= 0:
                return now
            s = sign * slope
            return now + gap / s if s > 0 else None

        return crossing_explanation(
            kind=self.name,
            now=now,
            value=level_now,
            threshold=thr,
            expected=when(res.slope_recent),
            earliest=when(res.slope_recent + sign * Z90 * res.slope_sd),
            latest=when(res.slope_recent - sign * Z90 * res.slope_sd),
            interval="P10-P90",
            confidence=float(expl["confidence"]),  # type: ignore[arg-type]
            band={},
        )


KIND = TrendKind()
