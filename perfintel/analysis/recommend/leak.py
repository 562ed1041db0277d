"""Memory that grows steadily since its last restart, whatever the traffic: a leak.

The current segment of a memory series starts after its last restart (a
drop of more than ``reset_drop`` from the running maximum) or at the start of
the window. The segment is a leak when it spans at least ``min_hours``, its
values rise monotonically (Kendall's tau with time at least ``min_tau``, on
per-bucket means, so a daily cycle around a flat level does not pass) and the
robust growth (Theil–Sen over pairs of buckets whole days apart, so the daily
cycle does not tilt it) is at least ``min_growth`` of the segment's starting
level per day. Evidence: the growth per day, the tau, the memory grown since
the segment began and, with a known capacity, when the growth reaches it.
Impact: the memory the growth holds now, at the memory price — what fixing
the leak (or restarting) releases. Confidence: the tau.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from .base import (
    GIB,
    Evidence,
    Impact,
    Recommendation,
    RecommendationContext,
    theil_sen,
)


def current_segment(mean: np.ndarray, drop: float, look: int = 3) -> int:
    """Index where the current segment starts: after the last restart.

    A restart is a bucket more than ``drop`` below the highest of the ``look``
    buckets before it (a restart releases memory at once; a slow decline or a
    daily cycle does not pass). Without one, the first bucket with data.
    """
    v = np.where(np.isfinite(mean), mean, np.nan)
    prev = np.full(v.size, np.nan)
    for k in range(1, look + 1):
        prev[k:] = np.fmax(prev[k:], v[:-k])  # NaN-ignoring maximum of the buckets before
    with np.errstate(invalid="ignore"):
        drops = np.flatnonzero(v < (1 - drop) * prev)
    if drops.size:
        return int(drops[-1])
    ok = np.flatnonzero(np.isfinite(mean))
    return int(ok[0]) if ok.size else 0


def kendall_tau(y: np.ndarray) -> float:
    """Kendall's tau (tau-a) between time and the finite values of ``y``:
    concordant minus discordant pairs over all pairs."""
    v = y[np.isfinite(y)]
    n = v.size
    if n < 3 or np.ptp(v) == 0:
        return 0.0
    upper = np.triu(np.sign(v[None, :] - v[:, None]), k=1)
    return float(upper.sum() / (n * (n - 1) / 2))


class MemoryLeak:
    """Memory growing steadily since the last restart: find and fix the leak."""

    name: ClassVar[str] = "memory_leak"
    requires: ClassVar[frozenset[str]] = frozenset({"resources"})

    reset_drop: float = 0.2
    min_hours: float = 36.0
    min_tau: float = 0.7
    min_growth: float = 0.02

    def evaluate(self, context: RecommendationContext) -> Iterator[Recommendation]:
        step_h = context.step_ms / 3.6e6
        per_day = 24 / step_h
        for r in context.resources:
            if r.kind != "memory":
                continue
            mean = r.usage.mean
            start = current_segment(mean, self.reset_drop)
            seg = mean[start:]
            finite = np.isfinite(seg)
            if finite.sum() * step_h < self.min_hours:
                continue
            first = seg[finite][: max(1, int(per_day / 4))]
            base = float(np.median(first))
            if not base > 0:
                continue
            slope_day = theil_sen(seg, period=round(per_day)) * per_day
            if slope_day < self.min_growth * base:
                continue
            tau = kendall_tau(seg)
            if tau < self.min_tau:
                continue
            now = float(seg[finite][-1])
            grown = max(0.0, now - base)
            price = context.cost.memory_gib_month
            gib = grown / GIB
            impact = Impact(
                -price * gib,
                -grown,
                "GiB",
                price,
                f"{-gib:+.3g} GiB × {price:.4g} {context.cost.currency}/GiB-month "
                f"= {-price * gib:+.2f}",
                context.cost.currency,
            )
            evidence = [
                Evidence("growth per day", slope_day, "bytes/day", r.series),
                Evidence("growth per day, relative", slope_day / base, "ratio/day", r.series),
                Evidence("kendall tau with time", tau, "ratio", r.series),
                Evidence("grown since segment start", grown, "bytes", r.series),
                Evidence("segment start", float(context.start_ms + start * context.step_ms), "ms"),
            ]
            extra: dict[str, float] = {}
            if r.capacity and r.capacity > now:
                days = (r.capacity - now) / slope_day
                evidence.append(Evidence("days until it reaches capacity", days, "days", r.series))
                extra["days_to_capacity"] = days
            when = (
                f"; at this rate it reaches its {r.capacity / GIB:.3g} GiB in "
                f"{extra['days_to_capacity']:.1f} days"
                if "days_to_capacity" in extra and r.capacity
                else ""
            )
            yield Recommendation(
                self.name,
                r,
                f"{r.name} grows {slope_day / GIB * 1024:.0f} MiB a day "
                f"({100 * slope_day / base:.0f} % of its level) since "
                f"{_ago(context, start)}{when}",
                "find and fix the leak (a restart releases the memory until it grows again)",
                round(float(tau), 2),
                impact,
                tuple(evidence),
                extra=extra,
            )


def _ago(ctx: RecommendationContext, start: int) -> str:
    hours = (ctx.size - start) * ctx.step_ms / 3.6e6
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{math.floor(hours)} hours"
