"""Right-sizing: CPU and memory that is much larger, or not large enough, for its peaks.

Both rules read the same numbers off a resource (:func:`sizing`):

* the **peak**: the 99th percentile of the per-bucket peaks over the window
  (a few of the busiest buckets are allowed to exceed it);
* the **projected peak**: the peak plus the growth of the daily maxima
  over ``horizon_days`` (:func:`weekly_growth`: from pairs of days whole
  weeks apart, so quiet weekends before busy weekdays do not pass for growth,
  and only when most of at least four such pairs rise) — the forecast a size
  must hold;
* the **size** they would propose: the projected peak divided by
  ``target`` (70 %), rounded up to whole cores, or to 1 GiB of node memory
  (128 MiB for containers and processes).

:class:`Overprovisioned` recommends shrinking when the projected peak stays
under ``low`` (35 %) of the capacity and the proposed size is smaller;
:class:`Underprovisioned` recommends growing when the peak reached ``high``
(90 %) of the capacity or the projected peak reaches the capacity. A resource
between the two is left alone. Confidence: the fraction of the window with
data (at least a week for full confidence) times how steady the daily
maxima are (1 - IQR/median, at least 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import (
    GIB,
    Evidence,
    Recommendation,
    RecommendationContext,
    Resource,
    coverage,
    daily,
    percentile,
    resize_impact,
    rounded_up,
)

MIB = 1024**2


@dataclass(frozen=True)
class Sizing:
    """What right-sizing reads off a resource (capacity units: cores or bytes)."""

    peak: float
    projected: float
    growth_per_day: float
    proposed: float
    utilisation: float
    projected_utilisation: float
    confidence: float
    hours_above_high: float


#: the least share of the window a resource's usage must cover to be sized
MIN_COVERAGE = 0.25
#: fewest pairs of days a week apart for a growth to be projected, and the share of them
#: that must rise
MIN_WEEK_PAIRS = 4
MIN_RISING = 0.75


def weekly_growth(day_max: np.ndarray) -> float:
    """Growth per day of the daily maxima, from pairs of days a whole number of weeks apart.

    Quiet weekends before busy weekdays are not growth, and neither is the
    noise of one pair: at least ``MIN_WEEK_PAIRS`` pairs are needed (eleven
    days of data), ``MIN_RISING`` of them must rise, and the growth is their
    median slope; otherwise none.
    """
    slopes = np.concatenate(
        [(day_max[k:] - day_max[:-k]) / k for k in range(7, day_max.size, 7)] or [np.zeros(0)]
    )
    slopes = slopes[np.isfinite(slopes)]
    if slopes.size < MIN_WEEK_PAIRS or np.mean(slopes > 0) < MIN_RISING:
        return 0.0
    return max(0.0, float(np.median(slopes)))


def granule(r: Resource) -> float:
    if r.kind == "cpu":
        return 1.0
    return float(GIB) if r.level == "node" else float(128 * MIB)


def sizing(
    r: Resource, ctx: RecommendationContext, target: float, horizon_days: float, high: float
) -> Sizing | None:
    """The sizing numbers of ``r`` (``None`` without a capacity or with too little data)."""
    if r.capacity is None or not r.capacity > 0:
        return None
    peaks = r.usage.peak
    cov = coverage(peaks)
    if cov < MIN_COVERAGE:
        return None
    per_day = max(1, round(86_400_000 / ctx.step_ms))
    peak = percentile(peaks, 99)
    day_max = daily(peaks, per_day)
    growth = weekly_growth(day_max)
    projected = peak + growth * horizon_days
    g = granule(r)
    proposed = rounded_up(projected / target, g, g)
    finite = day_max[np.isfinite(day_max)]
    steady = 1.0
    if finite.size >= 3:
        q1, med, q3 = np.percentile(finite, [25, 50, 75])
        if med > 0:
            steady = max(0.5, 1.0 - float(q3 - q1) / float(med))
    confidence = round(cov * min(1.0, ctx.days / 7) * steady, 2)
    above = float(np.sum(peaks[np.isfinite(peaks)] >= high * r.capacity)) * ctx.step_ms / 3.6e6
    return Sizing(
        peak,
        projected,
        growth,
        proposed,
        peak / r.capacity,
        projected / r.capacity,
        confidence,
        above,
    )


def _amount(kind: str, value: float) -> str:
    if kind == "cpu":
        return f"{value:g} cores" if value != 1 else "1 core"
    if value >= GIB:
        return f"{value / GIB:.3g} GiB"
    return f"{value / MIB:.0f} MiB"


def _evidence(r: Resource, s: Sizing, horizon_days: float) -> tuple[Evidence, ...]:
    unit = "cores" if r.kind == "cpu" else "bytes"
    return (
        Evidence("capacity", float(r.capacity or math.nan), unit, r.series),
        Evidence("p99 peak", s.peak, unit, r.series),
        Evidence("p99 peak utilisation", s.utilisation, "ratio", r.series),
        Evidence("daily peak growth", s.growth_per_day, f"{unit}/day", r.series),
        Evidence(f"projected peak in {horizon_days:g} days", s.projected, unit, r.series),
        Evidence("hours at or above the high mark", s.hours_above_high, "hours", r.series),
    )


class _Rightsizing:
    """The loop both rules share: CPU and memory with a capacity, sized, decided, costed."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset({"resources"})
    verdict: ClassVar[str]

    target: float = 0.7
    horizon_days: float = 30.0
    high: float = 0.9

    def decide(self, r: Resource, s: Sizing) -> tuple[float, str] | None:
        """``(proposed size, why)``, or ``None`` when this rule has nothing to say."""
        raise NotImplementedError

    def evaluate(self, context: RecommendationContext) -> Iterator[Recommendation]:
        for r in context.resources:
            if r.kind not in ("cpu", "memory") or r.capacity is None:
                continue
            s = sizing(r, context, self.target, self.horizon_days, self.high)
            decided = self.decide(r, s) if s is not None else None
            if s is None or decided is None:
                continue
            proposed, why = decided
            yield Recommendation(
                self.name,
                r,
                f"{r.name} is {self.verdict}: {why}",
                f"resize {r.kind} from {_amount(r.kind, r.capacity)} to "
                f"{_amount(r.kind, proposed)}",
                s.confidence,
                resize_impact(r.kind, r.capacity, proposed, context.cost),
                _evidence(r, s, self.horizon_days),
                r.capacity,
                proposed,
            )


class Overprovisioned(_Rightsizing):
    """CPU or memory whose projected peak uses a small part of it: shrink, and save."""

    name: ClassVar[str] = "overprovisioned"
    verdict: ClassVar[str] = "over-provisioned"
    low: float = 0.35

    def decide(self, r: Resource, s: Sizing) -> tuple[float, str] | None:
        assert r.capacity is not None
        if s.projected_utilisation >= self.low or s.proposed >= r.capacity:
            return None
        return s.proposed, f"its p99 peak is {s.utilisation:.0%} of {_amount(r.kind, r.capacity)}"


class Underprovisioned(_Rightsizing):
    """CPU or memory that ran at its limit, or will within the horizon: grow it."""

    name: ClassVar[str] = "underprovisioned"
    verdict: ClassVar[str] = "under-provisioned"

    def decide(self, r: Resource, s: Sizing) -> tuple[float, str] | None:
        assert r.capacity is not None
        if s.utilisation >= self.high:
            why = f"its p99 peak is {s.utilisation:.0%} of {_amount(r.kind, r.capacity)}"
        elif s.projected_utilisation >= 1.0:
            why = (
                f"its peak is projected to reach {s.projected_utilisation:.0%} within "
                f"{self.horizon_days:g} days"
            )
        else:
            return None
        return max(s.proposed, r.capacity + granule(r)), why
