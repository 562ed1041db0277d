"""Correlation, root cause and change impact over stored series (the analyze APIs' orchestration).

Each function fetches its series on one grid (:func:`.fetch.fetch_grid`) and
hands arrays to the pure models in :mod:`perfintel.analysis`
(:mod:`~perfintel.analysis.correlation`, :mod:`~perfintel.analysis.rootcause`,
:mod:`~perfintel.analysis.change_impact`); the HTTP adapter is
:mod:`perfintel.api.analyze`. Bounds: ``MAX_CORRELATION_SERIES`` series for a
correlation, ``MAX_ROOT_CAUSE_SERIES`` candidates for a root cause and
``MAX_CHANGE_SERIES`` metrics for a change impact (each costs a forecaster
fit per calibration origin); more is HTTP 422 before any sample is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from perfintel.analysis.change_impact import (
    ChangeImpact,
    annotation_changes,
    assess_change,
    group_changes,
)
from perfintel.analysis.correlation import CorrelationResult, correlate
from perfintel.analysis.rootcause import Cause, DependencyGraph, RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause.durations import counted_after_ms, in_time
from perfintel.analysis.rootcause.parts import PartGroup, group_parts
from perfintel.analysis.rootcause.window import from_data_start, has_history, window_of
from perfintel.analysis.signals import Grid, per_step_increase, series_input
from perfintel.errors import BadInputError, NotFoundError, QueryLimitError
from perfintel.model import LabelSet, Selector
from perfintel.performance.expression import Expression, describe, evaluate_range
from perfintel.performance.fetch import GridSet, fetch_grid, grid_for, sampling_step_ms
from perfintel.performance.outputs import without_outputs
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import QueryLimits, SampleReader

MAX_CORRELATION_SERIES = 200
MAX_ROOT_CAUSE_SERIES = 1000
#: most buckets of a root-cause grid with an automatic step (the cost grows with buckets ×
#: candidates: 2,000 is 15 s buckets over a 3 h baseline and a 30 min window, and 500
#: candidates rank in well under 500 ms, ``benchmarks/root_cause_step.py --latency``)
ROOT_CAUSE_MAX_POINTS = 2_000
MAX_CHANGE_SERIES = 20
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
#: changes in an annotation closer than this are one change (a rolling deploy)
CHANGE_GAP_MS = 15 * MINUTE_MS
#: the root-cause ranking's constants, one object for how far past the time a root cause
#: fetches (:func:`~perfintel.analysis.rootcause.durations.counted_after_ms`) and the ranking
ROOT_CAUSE_PARAMS = RootCauseParams()


# -- correlations ---------------------------------------------------------------------------


@dataclass
class CorrelationReport:
    grid: Grid
    source: str
    labels: list[LabelSet]
    target: int | None
    result: CorrelationResult


def correlations(
    reader: SampleReader,
    selectors: Sequence[Selector | Expression],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    target: Selector | Expression | None = None,
    max_lag_steps: int = 30,
    alpha: float = 0.05,
    max_samples: int | None = None,
    settings: QuerySettings | None = None,
) -> CorrelationReport:
    """Every pair among the series of ``selectors`` (and of ``target``, listed first); each
    a selector or a PromQL expression (its results named by it: :func:`_named`)."""
    grid = grid_for(start_ms, end_ms, step_ms)
    sets: list[GridSet] = []
    target_index = None
    if target is not None:
        t = _fetch(reader, target, grid, 1, max_samples, settings, "target")
        if not t.labels:
            raise NotFoundError(f"target {target} has no data in the range")
        sets.append(t)
        target_index = 0
    budget = MAX_CORRELATION_SERIES - (1 if target is not None else 0)
    for sel in selectors:
        if budget < 1:
            raise QueryLimitError(
                f"the selectors match more than {MAX_CORRELATION_SERIES} series in all "
                f"(limit {MAX_CORRELATION_SERIES} per correlation); narrow them down"
            )
        try:
            got = _fetch(reader, sel, grid, budget, max_samples, settings, "selector")
        except QueryLimitError as exc:
            raise QueryLimitError(
                f"the selectors match more than {MAX_CORRELATION_SERIES} series in all "
                f"(limit {MAX_CORRELATION_SERIES} per correlation; {exc})"
            ) from exc
        budget -= len(got.labels)
        sets.append(got)
    labels, rows = _merge(sets)
    if len(labels) < 2:
        raise NotFoundError("fewer than two series with data in the range")
    inputs = [series_input(ls, r) for ls, r in zip(labels, rows, strict=True)]
    res = correlate(inputs, step_seconds=step_ms / 1000, max_lag=max_lag_steps, alpha=alpha)
    return CorrelationReport(grid, sets[0].source, labels, target_index, res)


def _fetch(
    reader: SampleReader,
    query: Selector | Expression,
    grid: Grid,
    max_series: int,
    max_samples: int | None,
    settings: QuerySettings | None,
    what: str,
) -> GridSet:
    """The series of a selector (perfintel's own outputs left out) or of an expression (each
    named by the expression: two expressions' results would share their labels)."""
    if isinstance(query, Expression):
        got = _evaluated(reader, query, grid, settings, max_series, what)
        return GridSet(grid, got.source, [_named(ls, query) for ls in got.labels], got.values)
    sel = without_outputs(query)
    return fetch_grid(reader, sel, grid, max_series=max_series, max_samples=max_samples, what=what)


def _named(labels: LabelSet, expression: Expression) -> LabelSet:
    """A computed series' labels with the expression as its name, when it has none."""
    if any(k == "__name__" for k, _ in labels):
        return labels
    return tuple(sorted((*labels, ("__name__", str(expression)))))


def _merge(sets: Sequence[GridSet]) -> tuple[list[LabelSet], list[np.ndarray]]:
    """Series of several selections, each once (the first selection that has it wins)."""
    seen: set[LabelSet] = set()
    labels: list[LabelSet] = []
    rows: list[np.ndarray] = []
    for s in sets:
        for ls, row in zip(s.labels, s.values, strict=True):
            if ls not in seen:
                seen.add(ls)
                labels.append(ls)
                rows.append(row)
    return labels, rows


# -- root cause -------------------------------------------------------------------------------


@dataclass
class RootCauseReport:
    """``parts``: the causes shown, at most ``limit``, each the best ranked part of its
    measurement with its other parts that changed (:mod:`~perfintel.analysis.rootcause.parts`);
    ``ranked``: every change ranked, for what moved with what."""

    grid: Grid
    source: str
    candidates: int
    labels: list[LabelSet]
    parts: list[PartGroup[Cause]]
    ranked: list[Cause]
    #: candidates left out for want of history: first sampled past ``history_needed_ms``
    #: (half way into the baseline; :func:`~perfintel.analysis.rootcause.window.has_history`)
    without_history: int = 0
    history_needed_ms: int = 0
    #: when the data began, if inside the asked baseline (which was cut short there)
    recorded_from_ms: int | None = None
    window_start_ms: int = 0

    @property
    def causes(self) -> list[Cause]:
        """The causes shown, best first (one per measurement)."""
        return [g.first for g in self.parts]

    @property
    def note(self) -> str | None:
        """What was left out for want of history, and a baseline cut short where the data
        begin, in words (``None``: nothing to say)."""
        said = []
        if self.recorded_from_ms is not None:
            minutes = (self.window_start_ms - self.recorded_from_ms) / MINUTE_MS
            said.append(
                f"the data begin at {_utc(self.recorded_from_ms)}: the baseline is the "
                f"{minutes:.0f} min recorded before the window"
            )
        if self.without_history:
            said.append(self._young())
        return "; ".join(said) or None

    def _young(self) -> str:
        when = _utc(self.history_needed_ms)
        if self.without_history == self.candidates:
            return (
                f"every candidate was first sampled after {when}, half way into the baseline: "
                "a series' first minutes are no baseline to measure a change against (ask "
                "later, or with a shorter baseline)"
            )
        return (
            f"{self.without_history} of {self.candidates} candidates were first sampled after"
            f" {when}, half way into the baseline: left out (a series' first minutes are no"
            " baseline to measure a change against)"
        )


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def root_causes(
    reader: SampleReader,
    selector: Selector,
    time_ms: int,
    *,
    window_ms: int,
    baseline_ms: int,
    step_ms: int | None,
    limit: int | None,
    graph: DependencyGraph | None = None,
    max_propagation_ms: int = 5 * MINUTE_MS,
    max_samples: int | None = None,
    now_ms: int | None = None,
    params: RootCauseParams = ROOT_CAUSE_PARAMS,
) -> RootCauseReport:
    """The candidates of ``selector`` ranked as the root cause of an incident at ``time_ms``.

    The grid covers the baseline (before the window opened back by ``params.story`` of its
    length, :mod:`~perfintel.analysis.rootcause.story`), the window and a third of a window after
    ``time_ms`` (what exists of it), or more when a change may begin later than that and
    still count as a cause (:func:`~perfintel.analysis.rootcause.durations.counted_after_ms`),
    that part up to ``now_ms`` when given. ``step_ms`` None: the series' own sampling
    interval (:func:`.fetch.sampling_step_ms`, at most ``ROOT_CAUSE_MAX_POINTS``
    buckets): which of two series moved first is only seen at the resolution
    they were scraped at (15 s data on a 1-minute grid puts a cause and an
    effect 30 s later in one step). perfintel's own model outputs (``yhat``…) are
    no candidates unless ``selector`` names one (:func:`.outputs.without_outputs`).
    ``params`` size that fetch and rank it: the data fetched past the time are those the
    ranking counts.
    """
    selector = without_outputs(selector)
    start = time_ms - window_ms - baseline_ms
    end = time_ms + window_ms // 3
    if step_ms is None:
        step_ms = sampling_step_ms(
            reader,
            selector,
            start,
            time_ms,
            max_points=ROOT_CAUSE_MAX_POINTS,
            fallback_ms=MINUTE_MS,
            max_series=MAX_ROOT_CAUSE_SERIES,
            max_samples=max_samples,
        )
    if window_ms < 2 * step_ms:
        raise BadInputError(f"invalid parameter 'window': at least two steps of {step_ms} ms")
    if baseline_ms < 4 * step_ms:
        raise BadInputError(f"invalid parameter 'baseline': at least four steps of {step_ms} ms")
    # the window may open back by story × its length (the symptoms' story): the baseline
    # before the opened window is fetched too (it was cut short by that much)
    start -= math.ceil(params.story * (window_ms // step_ms)) * step_ms
    # what may count as a cause after the time (bounded by now: nothing exists later)
    counted = time_ms + counted_after_ms(params, step_ms)
    end = max(end, counted if now_ms is None else min(counted, now_ms))
    grid = grid_for(start, end, step_ms)
    got = fetch_grid(
        reader,
        selector,
        grid,
        max_series=MAX_ROOT_CAUSE_SERIES,
        max_samples=max_samples,
        what="selector",
    )
    if not got.labels:
        raise NotFoundError(f"no series match selector {selector} with data around the time")
    # the baseline is what was recorded: the data may begin after the grid does
    inputs, cut, first = from_data_start(got.inputs(), grid, time_ms - window_ms, baseline_ms)
    causes = rank_root_causes(
        time_ms,
        inputs,
        cut,
        graph,
        window_ms=window_ms,
        baseline_ms=baseline_ms,
        max_propagation_ms=max_propagation_ms,
        params=params,
    )
    shown = group_parts(causes)[:limit]
    # the ranking leaves out what has no baseline; the report says how many, and from when
    w = window_of(cut, time_ms, window_ms, baseline_ms, in_time(params, step_ms))
    lacking = int(np.sum(~has_history(first, w)))
    needed = cut.time(w.base + (w.start - w.base) // 2)
    # cut where the data begin (past half the asked baseline): said, with what is left of it
    recorded = cut.start_ms if cut.start_ms != grid.start_ms else None
    return RootCauseReport(
        grid,
        got.source,
        len(got.labels),
        got.labels,
        shown,
        causes,
        lacking,
        needed,
        recorded,
        cut.time(w.start),
    )


# -- change impact ------------------------------------------------------------------------------


def change_step_ms(after_ms: int) -> int:
    """The step of a change-impact analysis: 1 minute up to 3 h after, 5 minutes up to a day, then 1 h."""
    if after_ms <= 3 * HOUR_MS:
        return MINUTE_MS
    if after_ms <= DAY_MS:
        return 5 * MINUTE_MS
    return HOUR_MS


def default_before_ms(step_ms: int) -> int:
    """History before the change by step: 3 days of minutes, 14 days of 5 minutes, else 60 days."""
    return {MINUTE_MS: 3 * DAY_MS, 5 * MINUTE_MS: 14 * DAY_MS}.get(step_ms, 60 * DAY_MS)


@dataclass
class Skipped:
    labels: LabelSet
    reason: str


@dataclass
class SeriesImpact:
    labels: LabelSet
    impact: ChangeImpact
    timestamps: np.ndarray  # the after window's grid
    observed: np.ndarray  # the analysed values there (counters: increase per step)


@dataclass
class ChangeImpactReport:
    change_ms: int
    changes: list[int]
    annotation: list[LabelSet]
    grid: Grid
    source: str
    after_steps: int
    results: list[SeriesImpact] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _evaluated(
    reader: SampleReader,
    expression: Expression,
    grid: Grid,
    settings: QuerySettings | None,
    max_series: int = MAX_CHANGE_SERIES,
    what: str = "selector",
) -> GridSet:
    """``expression`` evaluated at every time of ``grid``, as the series a selector gives."""
    found = evaluate_range(
        reader,
        expression,
        grid.start_ms,
        grid.time(grid.size - 1),
        grid.step_ms,
        settings=settings,
        max_series=max_series,
        what=what,
    )
    values = np.full((len(found), grid.size), np.nan)
    for row, s in zip(values, found, strict=True):
        row[(s.timestamps - grid.start_ms) // grid.step_ms] = s.values
    return GridSet(grid, "expression", [s.labels for s in found], values)


def find_changes(
    reader: SampleReader,
    annotation: Selector,
    start_ms: int,
    end_ms: int,
    *,
    max_series: int = 1000,
    max_samples: int | None = None,
) -> tuple[list[int], list[LabelSet]]:
    """Changes recorded by an annotation selector in ``[start_ms, end_ms]``, grouped.

    A series that begins inside the range (an info metric such as
    ``deploy_info{version="2.5.0"}``) marks a change where it begins; any
    series marks one where its value changes (``changes_total`` incrementing).
    """
    raw = reader.select(
        annotation,
        start_ms,
        end_ms,
        limits=QueryLimits(max_series=max_series, max_samples=max_samples),
    )
    times: list[int] = []
    labels: list[LabelSet] = []
    for s in raw:
        ts = np.asarray(s.timestamps, dtype=np.int64)
        if ts.size == 0:
            continue
        # a series already there at the start of the range did not begin there
        found = annotation_changes(
            ts, s.values, starts_change=bool(ts[0] > start_ms + 5 * MINUTE_MS)
        )
        if found:
            labels.append(s.labels)
            times.extend(found)
    return group_changes(times, CHANGE_GAP_MS), labels


def change_impact(
    reader: SampleReader,
    selector: Selector | Expression,
    *,
    change_ms: int | None,
    annotation: Selector | None,
    end_ms: int,
    before_ms: int | None,
    after_ms: int,
    step_ms: int | None,
    level: float,
    max_samples: int | None = None,
    settings: QuerySettings | None = None,
) -> ChangeImpactReport:
    """The impact of a change on every series of ``selector`` (see the module docstring).

    The change is ``change_ms`` or, without it, the latest change the
    ``annotation`` records before ``end_ms`` with at least one step of data
    after it. ``selector`` may be a PromQL expression (a mean latency:
    ``rate(x_sum[5m]) / rate(x_count[5m])``), evaluated at every step of the grid within
    the limits of ``settings``; its results are gauges.
    """
    step = step_ms or change_step_ms(after_ms)
    before = before_ms or default_before_ms(step)
    changes: list[int] = []
    annotated: list[LabelSet] = []
    if change_ms is None:
        if annotation is None:
            raise BadInputError("give 'change_time' or an 'annotation' selector to find it")
        changes, annotated = find_changes(
            reader, annotation, end_ms - before, end_ms, max_samples=max_samples
        )
        usable = [t for t in changes if t + step <= end_ms]
        if not usable:
            raise NotFoundError(
                f"annotation {annotation} records no change in the {before // DAY_MS or 1} days "
                "before the end with data after it"
            )
        change_ms = usable[-1]
    after = max(1, -(-after_ms // step))
    grid = grid_for(change_ms - before, change_ms + after * step - 1, step)
    change_index = grid.index(change_ms)
    if change_ms % step:
        change_index += 1  # the first whole step after the change
    if isinstance(selector, Expression):
        got = _evaluated(reader, selector, grid, settings)
    else:
        got = fetch_grid(
            reader, selector, grid, max_series=MAX_CHANGE_SERIES, max_samples=max_samples
        )
    if not got.labels:
        raise NotFoundError(f"no series {describe(selector)} around the change")
    report = ChangeImpactReport(change_ms, changes, annotated, grid, got.source, after, [], [])
    for si in got.inputs():
        try:
            impact = assess_change(
                si.values,
                change_index,
                after,
                step_seconds=step / 1000,
                level=level,
                counter=si.counter,
            )
        except BadInputError as exc:
            report.skipped.append(Skipped(si.labels, str(exc)))
            continue
        sl = slice(change_index, change_index + impact.after)
        vals = per_step_increase(si.values) if si.counter else np.asarray(si.values, dtype=float)
        report.results.append(SeriesImpact(si.labels, impact, grid.timestamps[sl], vals[sl]))
    return report
