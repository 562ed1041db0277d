"""Disks without enough headroom for their forecast: full within the horizon.

The daily maxima of the used space (so a daily clean-up does not pass for
growth) get a robust (Theil–Sen) growth per day; a disk whose largest use
reaches ``target`` of its size within ``horizon_days`` at that rate gets a
recommendation to grow to what the horizon needs at ``target``, rounded up
to ``granule_gib``. Impact: the added GiB at the disk price. Confidence: how
much of the window has data and how linear the daily maxima are (R² of a
line, at least 0.5 when the growth is clear).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from .base import (
    GIB,
    Evidence,
    Recommendation,
    RecommendationContext,
    coverage,
    daily,
    resize_impact,
    rounded_up,
    theil_sen,
)


def _r2(y: np.ndarray) -> float:
    idx = np.flatnonzero(np.isfinite(y))
    if idx.size < 3 or np.ptp(y[idx]) == 0:
        return 0.0
    c = np.corrcoef(idx, y[idx])[0, 1]
    return float(c * c) if np.isfinite(c) else 0.0


class DiskHeadroom:
    """A disk that fills up within the horizon: grow it before it does."""

    name: ClassVar[str] = "disk_headroom"
    requires: ClassVar[frozenset[str]] = frozenset({"resources"})

    target: float = 0.85
    horizon_days: float = 30.0
    granule_gib: float = 10.0

    def evaluate(self, context: RecommendationContext) -> Iterator[Recommendation]:
        per_day = max(1, round(86_400_000 / context.step_ms))
        for r in context.resources:
            if r.kind != "disk" or r.capacity is None or not r.capacity > 0:
                continue
            day_max = daily(r.usage.peak, per_day)
            if np.isfinite(day_max).sum() < 3:
                continue
            growth = theil_sen(day_max)
            if not growth > 0:
                continue
            now = float(day_max[np.isfinite(day_max)][-1])
            limit = self.target * r.capacity
            days = max(0.0, (limit - now) / growth)
            if days > self.horizon_days:
                continue
            needed = (now + growth * self.horizon_days) / self.target
            proposed = rounded_up(
                needed, self.granule_gib * GIB, r.capacity + self.granule_gib * GIB
            )
            confidence = round(coverage(r.usage.peak) * max(0.5, _r2(day_max)), 2)
            full = (r.capacity - now) / growth
            yield Recommendation(
                self.name,
                r,
                f"{r.name} reaches {self.target:.0%} in {days:.1f} days and is full in "
                f"{full:.1f} days at {growth / GIB:.3g} GiB a day",
                f"grow the disk from {r.capacity / GIB:.4g} GiB to {proposed / GIB:.4g} GiB",
                confidence,
                resize_impact("disk", r.capacity, proposed, context.cost),
                (
                    Evidence("size", r.capacity, "bytes", r.series),
                    Evidence("used (latest daily peak)", now, "bytes", r.series),
                    Evidence("growth per day", growth, "bytes/day", r.series),
                    Evidence(f"days until {self.target:.0%}", days, "days", r.series),
                    Evidence("days until full", full, "days", r.series),
                ),
                r.capacity,
                proposed,
                {"days_to_target": days, "days_to_full": full},
            )
