"""Outliers among peers over stored history (the outliers API's orchestration).

``detect_outliers`` takes the series of a selector or a PromQL range query over
``[start, end]``, puts every series on one grid of ``step`` (the mean per step;
a range query's points are on it already), splits them into peer groups by the
values of the ``by`` labels, and scores each group's members over the whole
range with ``perfintel.analysis.outliers.score_window``: the share of steps a
member spent more than ``tolerance`` peer spreads from the group median, an
outlier above ``pct``. Groups are returned with their median and band per
step (for plotting) and their members sorted by score, each with a plain-words
explanation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perfintel.analysis.outliers import DEFAULT_PCT, DEFAULT_TOLERANCE, explain, score_window
from perfintel.errors import BadInputError, QueryLimitError
from perfintel.model import METRIC_NAME, LabelSet
from perfintel.performance.anomalies import bucket_means

#: Most series one request may compare (HTTP 422 beyond).
MAX_SERIES = 2_000
#: Most steps of the grid, and most grid points of a request.
MAX_STEPS = 11_000
MAX_POINTS = 4_000_000
#: Default step: the range in this many steps, at least one minute.
DEFAULT_STEPS = 720
MIN_DEFAULT_STEP_MS = 60_000


def default_step_ms(start_ms: int, end_ms: int) -> int:
    """One minute, or coarser so the range has at most ``DEFAULT_STEPS`` steps (whole seconds)."""
    span = max(end_ms - start_ms, 1)
    return max(MIN_DEFAULT_STEP_MS, math.ceil(span / DEFAULT_STEPS / 1000) * 1000)


@dataclass
class MemberResult:
    labels: LabelSet
    score: float  # share of the range's steps outside the peer band (NaN: never compared)
    flagged: bool
    deviation: float  # median deviation from the group median, in peer spreads
    steps: int  # steps at which the member was compared with its peers
    explanation: str


@dataclass
class GroupResult:
    labels: dict[str, str]  # the ``by`` labels of the group
    timestamps: np.ndarray
    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    members: list[MemberResult] = field(default_factory=list)

    @property
    def flagged(self) -> int:
        return sum(m.flagged for m in self.members)


@dataclass
class OutlierReport:
    start_ms: int
    end_ms: int
    step_ms: int
    tolerance: float
    pct: float
    groups: list[GroupResult]


def detect_outliers(
    series: Sequence[tuple[LabelSet, np.ndarray, np.ndarray]],
    start_ms: int,
    end_ms: int,
    *,
    by: Sequence[str] = (),
    step_ms: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    pct: float = DEFAULT_PCT,
) -> OutlierReport:
    """Score every member of every peer group; ``series`` are ``(labels, ts_ms, values)``."""
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    step = step_ms if step_ms is not None else default_step_ms(start_ms, end_ms)
    if step <= 0:
        raise BadInputError("invalid parameter 'step': must be positive")
    if not tolerance > 0:
        raise BadInputError("invalid parameter 'tolerance': must be positive")
    if not 0 <= pct < 1:
        raise BadInputError("invalid parameter 'pct': must be in [0, 1)")
    first = start_ms - start_ms % step
    n_steps = (end_ms - first) // step + 1
    if n_steps > MAX_STEPS:
        raise QueryLimitError(
            f"{n_steps} steps (limit {MAX_STEPS}): use a larger step or a shorter range"
        )
    if len(series) > MAX_SERIES:
        raise QueryLimitError(
            f"{len(series)} series (limit {MAX_SERIES}): narrow the selector or the query"
        )
    if len(series) * n_steps > MAX_POINTS:
        raise QueryLimitError(
            f"{len(series) * n_steps} grid points (limit {MAX_POINTS}): use a larger step"
        )
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, (labels, _, _) in enumerate(series):
        values = dict(labels)
        groups.setdefault(tuple(values.get(k, "") for k in by), []).append(i)
    grid = first + step * np.arange(n_steps, dtype=np.int64)
    out = []
    for key, members in sorted(groups.items()):
        matrix = np.full((len(members), n_steps), np.nan)
        for row, i in enumerate(members):
            _, ts, x = series[i]
            ts = np.asarray(ts, dtype=np.int64)
            x = np.asarray(x, dtype=np.float64)
            ok = np.isfinite(x) & (ts >= start_ms) & (ts <= end_ms)
            b, means = bucket_means(ts[ok], x[ok], step)
            matrix[row, (b - first) // step] = means
        w = score_window(matrix, tolerance, pct)
        labels_of = [series[i][0] for i in members]
        names = _member_names(labels_of)
        span = _span_text(step * n_steps)
        result = GroupResult(
            labels={k: v for k, v in zip(by, key, strict=True) if v},
            timestamps=grid,
            median=w.median,
            lower=w.median - tolerance * w.spread,
            upper=w.median + tolerance * w.spread,
        )
        for row, labels in enumerate(labels_of):
            score, dev = float(w.score[row]), float(w.deviation[row])
            flagged = bool(w.flagged[row])
            result.members.append(
                MemberResult(
                    labels,
                    score,
                    flagged,
                    dev,
                    int(w.steps[row]),
                    explain(names[row], score, dev, flagged, pct, span),
                )
            )
        result.members.sort(key=lambda m: (-np.nan_to_num(m.score, nan=-1.0), m.labels))
        out.append(result)
    return OutlierReport(start_ms, end_ms, step, tolerance, pct, out)


def _member_names(labels: list[LabelSet]) -> list[str]:
    """Each member by the labels that tell it from the others of its group."""
    if not labels:
        return []
    common = set(labels[0])
    for ls in labels[1:]:
        common &= set(ls)
    names = []
    for ls in labels:
        own = [(k, v) for k, v in ls if (k, v) not in common and k != METRIC_NAME]
        pairs = own or [(k, v) for k, v in ls if k != METRIC_NAME] or list(ls)
        names.append("{" + ", ".join(f'{k}="{v}"' for k, v in pairs) + "}")
    return names


def _span_text(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"
