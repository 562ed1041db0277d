"""Regular histories for the models, loaded from any ``SampleReader``.

The forecasting and capacity models want a regular grid: one value per step,
NaN where a step has no data. :func:`load_history` builds that grid for every
series matching a selector, from the cheapest source that is exact:

* a **rollup tier** when the step is a multiple of a tier's resolution (the
  store picks the coarsest tier not coarser than the step; the DuckDB store
  keeps 5-minute and 1-hour tiers by default), so long horizons never scan
  raw samples;
* otherwise **raw samples**, bucketed to the step.

Each bucket holds the mean of its samples (``run_series_query`` with
``fn="avg"``, which is exact from a tier: sum of sums over count of counts).
Bucket ``i`` covers ``[t_i, t_i + step)`` and is labelled with its start;
the last bucket is the one holding the end time (it may be partial).

Step policy
-----------
:func:`choose_window` maps the forecast horizon to a step and a history
length (a small pure function, tested on its own):

=====================  =========  ==========================================
horizon                step       history
=====================  =========  ==========================================
up to 6 hours          1 minute   7 days (10,080 points)
up to 3 days           5 minutes  28 days (8,064 points)
longer (to 365 days)   1 hour     365 days, or what exists (at most 8,760)
=====================  =========  ==========================================

A request may set ``step`` and/or ``history``. Limits: the step is at least
one second and at most the horizon; the history is at most 365 days and
at least two steps; history and horizon are each at most
:data:`MAX_POINTS` steps. An explicit value beyond a limit is refused
(``BadInputError`` naming the field); a default history that would exceed
:data:`MAX_POINTS` at an explicit step is shortened to fit.

Series whose data starts inside the window are returned from their first
bucket with data ("what exists"); leading empty buckets are dropped, interior
and trailing ones are NaN. At most :data:`MAX_SERIES` series per request:
more raise ``QueryLimitError`` (HTTP 422) before any sample is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from perfintel.errors import BadInputError, QueryLimitError
from perfintel.model import LabelSet, Selector
from perfintel.performance.expression import AnalysisQuery, Expression, evaluate_range
from perfintel.query.series_query import run_series_query
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import QueryLimits, SampleReader
from perfintel.timeparse import format_duration_ms

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: most series one request may analyse
MAX_SERIES = 200
#: most steps of history, and most steps of horizon, per series
MAX_POINTS = 20_000
#: longest history and longest horizon
MAX_HISTORY_MS = 365 * DAY_MS
MAX_HORIZON_MS = 365 * DAY_MS
MIN_HORIZON_MS = MINUTE_MS
MIN_STEP_MS = SECOND_MS

#: (horizon up to, step, history) — the default policy, shortest horizon first
POLICY: tuple[tuple[int, int, int], ...] = (
    (6 * HOUR_MS, MINUTE_MS, 7 * DAY_MS),
    (3 * DAY_MS, 5 * MINUTE_MS, 28 * DAY_MS),
    (MAX_HORIZON_MS, HOUR_MS, MAX_HISTORY_MS),
)


@dataclass(frozen=True)
class Window:
    """What to load and forecast: the step, the history length and the horizon, in ms."""

    step_ms: int
    history_ms: int
    horizon_ms: int

    @property
    def history_points(self) -> int:
        return self.history_ms // self.step_ms

    @property
    def horizon_steps(self) -> int:
        """Steps to forecast: the horizon rounded up to whole steps."""
        return -(-self.horizon_ms // self.step_ms)


def choose_window(
    horizon_ms: int, *, step_ms: int | None = None, history_ms: int | None = None
) -> Window:
    """The step and history for a horizon (see the module docstring for the policy).

    >>> w = choose_window(4 * HOUR_MS)
    >>> w.step_ms // MINUTE_MS, w.history_ms // DAY_MS, w.horizon_steps
    (1, 7, 240)
    >>> choose_window(30 * DAY_MS).step_ms == HOUR_MS
    True
    """
    if not MIN_HORIZON_MS <= horizon_ms <= MAX_HORIZON_MS:
        raise BadInputError(
            f"invalid parameter 'horizon': must be between 1 minute and 365 days, "
            f"got {format_duration_ms(horizon_ms)}"
        )
    default_step, default_history = next(
        (step, hist) for upto, step, hist in POLICY if horizon_ms <= upto
    )
    step = default_step if step_ms is None else int(step_ms)
    if step_ms is not None:
        if step < MIN_STEP_MS:
            raise BadInputError("invalid parameter 'step': must be at least 1 second")
        if step > horizon_ms:
            raise BadInputError(
                f"invalid parameter 'step': {format_duration_ms(step)} is longer than the horizon "
                f"({format_duration_ms(horizon_ms)})"
            )
        if -(-horizon_ms // step) > MAX_POINTS:
            raise BadInputError(
                f"invalid parameter 'step': the horizon would be {-(-horizon_ms // step)} steps "
                f"of {format_duration_ms(step)} (limit {MAX_POINTS}); use a longer step"
            )
    if history_ms is None:
        history = min(default_history, MAX_POINTS * step)
    else:
        history = int(history_ms)
        if history > MAX_HISTORY_MS:
            raise BadInputError(
                f"invalid parameter 'history': at most 365 days, got {format_duration_ms(history)}"
            )
        if history < 2 * step:
            raise BadInputError(
                f"invalid parameter 'history': {format_duration_ms(history)} is shorter than two steps "
                f"of {format_duration_ms(step)}"
            )
        if history // step > MAX_POINTS:
            raise BadInputError(
                f"invalid parameter 'history': {history // step} steps of {format_duration_ms(step)} "
                f"(limit {MAX_POINTS}); shorten the history or lengthen the step"
            )
    history -= history % step
    return Window(step, history, int(horizon_ms))


class SeriesLike(Protocol):
    labels: LabelSet
    timestamps: np.ndarray
    values: np.ndarray


@dataclass
class History:
    """One series on the regular grid: ``timestamps`` (int64 ms bucket starts, one step
    apart) and ``values`` (float64, NaN = no data in that bucket)."""

    labels: LabelSet
    timestamps: np.ndarray
    values: np.ndarray


@dataclass
class HistorySet:
    """The histories of one selection.

    ``source`` is ``"raw"`` (raw samples bucketed to the step) or
    ``"tier:<resolution ms>"`` (a rollup tier) or ``"promql"`` (an evaluated
    expression); ``start_ms``/``last_ms`` are the
    first and last bucket of the grid (every series ends at ``last_ms``).
    """

    step_ms: int
    source: str
    start_ms: int
    last_ms: int
    series: list[History]


def count_series(
    reader: SampleReader,
    selector: Selector,
    start_ms: int,
    end_ms: int,
    *,
    max_series: int = MAX_SERIES,
    what: str = "selector",
) -> int:
    """How many series match (with data in range); ``QueryLimitError`` beyond ``max_series``."""
    found = reader.series([selector], start_ms, end_ms, limit=max_series + 1)
    if len(found) > max_series:
        raise QueryLimitError(
            f"{what} {selector} matches more than {max_series} series "
            f"(limit {max_series} per request); narrow it down"
        )
    return len(found)


def grid_bounds(end_ms: int, window: Window) -> tuple[int, int]:
    """First and last bucket start of the grid that ends with the bucket holding ``end_ms``."""
    step = window.step_ms
    last = end_ms - end_ms % step
    return last - (window.history_points - 1) * step, last


def load_history(
    reader: SampleReader,
    selector: AnalysisQuery,
    end_ms: int,
    window: Window,
    *,
    max_series: int = MAX_SERIES,
    max_samples: int | None = None,
    what: str = "selector",
    settings: QuerySettings | None = None,
) -> HistorySet:
    """Every series of ``selector`` on the regular grid of ``window`` ending at ``end_ms``.

    A selector is read directly (see the module docstring); any other PromQL
    expression is evaluated (``perfintel.performance.expression``) within the
    limits of ``settings``, each bucket holding the value at the latest
    evaluation instant inside it (``source`` ``"promql"``).

    Raises ``QueryLimitError`` when more than ``max_series`` series match
    (checked on the index first for a selector) or the read crosses ``max_samples``.
    """
    if isinstance(selector, Expression):
        return _expression_history(
            reader, selector, end_ms, window, max_series, max_samples, what, settings
        )
    step = window.step_ms
    first, last = grid_bounds(end_ms, window)
    count_series(reader, selector, first, end_ms, max_series=max_series, what=what)
    limits = QueryLimits(max_series=max_series, max_samples=max_samples)
    result = run_series_query(
        reader, selector, first, end_ms, step_ms=step, fn="avg", limits=limits
    )
    source = "raw" if result.source in ("raw", "step") else result.source
    return HistorySet(step, source, first, last, _on_grid(result.series, first, step, window))


def _on_grid(found: Sequence[SeriesLike], first: int, step: int, window: Window) -> list[History]:
    n = window.history_points
    out: list[History] = []
    for s in found:
        idx = (s.timestamps - first) // step
        keep = (idx >= 0) & (idx < n)
        idx = idx[keep]
        if not len(idx):
            continue
        values = np.full(n, np.nan)
        values[idx] = s.values[keep]
        lead = int(idx.min())
        grid = first + step * np.arange(lead, n, dtype=np.int64)
        out.append(History(s.labels, grid, values[lead:]))
    return out


def _expression_history(
    reader: SampleReader,
    expression: Expression,
    end_ms: int,
    window: Window,
    max_series: int,
    max_samples: int | None,
    what: str,
    settings: QuerySettings | None,
) -> HistorySet:
    step = window.step_ms
    first, last = grid_bounds(end_ms, window)
    s = settings or QuerySettings()
    if max_samples is not None:
        s = replace(s, max_samples=min(s.max_samples, max_samples))
    found = evaluate_range(
        reader, expression, first, end_ms, step, settings=s, max_series=max_series, what=what
    )
    # evaluated at end_ms - k*step: the instant inside bucket k (bucket starts are multiples of step)
    return HistorySet(step, "promql", first, last, _on_grid(found, first, step, window))
