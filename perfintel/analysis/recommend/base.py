"""The recommendation contract: rules are plugins over a context of observed data.

A rule is a small class with a ``name``, the context sections it
``requires`` and one method::

    evaluate(context: RecommendationContext) -> Iterable[Recommendation]

Rules never read a store or the network: the context hands them arrays. The
built-in rules register through the ``perfintel.recommendations`` entry-point
group exactly as a third-party rule does (:mod:`.registry`). A context
section a rule requires that the caller could not provide (``alerts`` before
the alerting service exists, for instance) means the rule is not run — so a
rule about noisy alert rules can be written against a section that appears
later without anyone stubbing it now.

Sections of the context
-----------------------
``resources``
    :class:`Resource` objects: one CPU, memory or disk resource of a node,
    container or process, with its usage over the analysis window on a
    regular grid (per-bucket means and, where the source has them, per-bucket
    peaks) and its capacity (cores or bytes) when known.

Money
-----
Every cost figure comes from :class:`CostModel` and the resource sizes the
metrics report; :meth:`CostModel.monthly` is the one formula (a month is
``hours_per_month`` hours), so a test can recompute every figure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from perfintel.model import LabelSet

GIB = 1024**3
ResourceKind = Literal["cpu", "memory", "disk"]
Level = Literal["node", "container", "process"]
SECTIONS = frozenset({"resources"})


@dataclass(frozen=True)
class CostModel:
    """Prices per unit of capacity: a core for an hour, a GiB of memory or disk for a month."""

    core_hour: float = 0.04
    memory_gib_month: float = 3.0
    disk_gib_month: float = 0.10
    hours_per_month: float = 730.0
    currency: str = "USD"

    def unit_price(self, kind: ResourceKind) -> tuple[float, str]:
        """Monthly price of one unit of ``kind`` and the unit's name."""
        if kind == "cpu":
            return self.core_hour * self.hours_per_month, "core"
        if kind == "memory":
            return self.memory_gib_month, "GiB"
        return self.disk_gib_month, "GiB"

    def monthly(self, kind: ResourceKind, amount: float) -> float:
        """Monthly cost of ``amount`` of capacity (cores for CPU, bytes for memory and disk)."""
        price, _ = self.unit_price(kind)
        units = amount if kind == "cpu" else amount / GIB
        return price * units


@dataclass(frozen=True)
class Usage:
    """Usage on the context's grid: ``mean[i]`` and ``peak[i]`` of bucket ``i`` (NaN: no data).

    Units: cores for CPU, bytes for memory and disk. ``peak`` is the bucket's
    largest sample where the source keeps it (rollup ``max``), else the mean.
    """

    mean: np.ndarray
    peak: np.ndarray


@dataclass(frozen=True)
class Resource:
    """One resource: what it is, whose it is, how much of it was used, how much there is.

    ``entity`` are the labels that identify its owner (``instance``,
    ``service``, ``container``, ``mountpoint``…); ``series`` the stored series
    its usage and capacity were computed from (for the dashboard to draw).
    """

    kind: ResourceKind
    level: Level
    entity: LabelSet
    usage: Usage
    capacity: float | None
    series: tuple[LabelSet, ...] = ()

    @property
    def name(self) -> str:
        d = dict(self.entity)
        who = ",".join(f'{k}="{v}"' for k, v in sorted(d.items()))
        return f"{self.level} {self.kind}{{{who}}}"


@dataclass(frozen=True)
class RecommendationContext:
    """What rules see: the grid (``start_ms``, ``step_ms``, ``size``), the sections, the prices."""

    start_ms: int
    step_ms: int
    size: int
    cost: CostModel
    resources: Sequence[Resource] = ()
    sections: frozenset[str] = SECTIONS

    @property
    def days(self) -> float:
        return self.size * self.step_ms / 86_400_000


@dataclass(frozen=True)
class Evidence:
    """One number behind a recommendation, with its unit and what it was computed from."""

    name: str
    value: float
    unit: str
    series: tuple[LabelSet, ...] = ()


@dataclass(frozen=True)
class Impact:
    """The monthly cost change if the recommendation is followed (negative: a saving).

    ``amount`` is the change of capacity (cores or bytes, negative: less);
    ``formula`` spells the arithmetic out: units × unit price per month.
    """

    monthly_cost: float
    amount: float
    unit: str
    unit_price: float
    formula: str
    currency: str


@dataclass(frozen=True)
class Recommendation:
    """One finding: a rule's ``kind``, the resource, the action, why, how sure, what it is worth."""

    kind: str
    resource: Resource
    title: str
    action: str
    confidence: float
    impact: Impact | None
    evidence: tuple[Evidence, ...]
    current: float | None = None
    proposed: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class RecommendationRule(Protocol):
    """A recommendation kind: registered under the ``perfintel.recommendations`` entry points."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]]

    def evaluate(self, context: RecommendationContext) -> Iterable[Recommendation]: ...


def resize_impact(kind: ResourceKind, current: float, proposed: float, cost: CostModel) -> Impact:
    """The monthly cost change of resizing a resource from ``current`` to ``proposed``."""
    price, unit = cost.unit_price(kind)
    amount = proposed - current
    units = amount if kind == "cpu" else amount / GIB
    monthly = cost.monthly(kind, amount)
    formula = f"{units:+.3g} {unit} × {price:.4g} {cost.currency}/{unit}-month = {monthly:+.2f}"
    if kind == "cpu":
        formula = (
            f"{units:+.3g} cores × {cost.core_hour:.4g} {cost.currency}/core-hour × "
            f"{cost.hours_per_month:g} h = {monthly:+.2f}"
        )
    return Impact(monthly, amount, unit, price, formula, cost.currency)


def percentile(values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of the finite values (NaN when there are none)."""
    v = values[np.isfinite(values)]
    return float(np.percentile(v, q)) if v.size else math.nan


def coverage(values: np.ndarray) -> float:
    """Fraction of buckets with data."""
    return float(np.isfinite(values).mean()) if values.size else 0.0


def daily(values: np.ndarray, per_day: int, how: str = "max") -> np.ndarray:
    """Per-day maxima (or medians) of a bucketed series; days without data are NaN."""
    n = values.size // per_day * per_day
    if n == 0 or per_day < 1:
        return np.zeros(0)
    days = values[values.size - n :].reshape(-1, per_day)
    out = np.full(days.shape[0], np.nan)
    ok = np.isfinite(days).any(axis=1)
    if ok.any():
        fn = np.nanmax if how == "max" else np.nanmedian
        out[ok] = fn(days[ok], axis=1)
    return out


def theil_sen(y: np.ndarray, period: int = 1) -> float:
    """Median of pairwise slopes of the finite points of ``y`` (per index step).

    With ``period > 1`` only pairs a whole number of periods apart count (when
    there are any): a cycle of that period then adds nothing to the slopes,
    and there are ``period`` times fewer pairs to sort.
    """
    y = np.asarray(y, dtype=np.float64)
    if period > 1 and y.size > period:
        parts = [(y[k:] - y[:-k]) / k for k in range(period, y.size, period)]
        slopes = np.concatenate(parts)
        slopes = slopes[np.isfinite(slopes)]
        if slopes.size:
            return float(np.median(slopes))
    idx = np.flatnonzero(np.isfinite(y))
    if idx.size < 2:
        return 0.0
    i, j = _pairs(idx.size)
    return float(np.median((y[idx[j]] - y[idx[i]]) / (idx[j] - idx[i])))


@functools.lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def rounded_up(amount: float, granule: float, minimum: float) -> float:
    """``amount`` rounded up to a multiple of ``granule``, at least ``minimum``."""
    return max(minimum, math.ceil(amount / granule - 1e-9) * granule)


def registered_sections(rules: Sequence[RecommendationRule]) -> frozenset[str]:
    """Every context section some rule requires."""
    return frozenset().union(*(r.requires for r in rules)) if rules else frozenset()
