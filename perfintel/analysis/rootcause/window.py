"""Where the ranking looks, and how late a change may begin and still be a cause.

The analysis window is the ``window`` before the asked time, with a third of a window after
it (or more, up to ``symptom_minutes``, where the data reach that far) to see how changes
develop; the baseline is the ``baseline`` before the window. With ``story``
(:mod:`~perfintel.analysis.rootcause.story`) the window opens back when the largest symptom
began as it opened, and every series is measured again
(:func:`~perfintel.analysis.rootcause.measure.measure_changes`). The *late-onset rule*: a
change that began after the asked time plus ``onset_slack`` (opened to the first symptom
after it with ``symptom_minutes``: :func:`~perfintel.analysis.rootcause.durations.to_first_symptom`),
beyond its onset's uncertainty, is no cause; a symptom is late from the asked time plus
the slack alone (a symptom begun later is an effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from perfintel.errors import BadInputError

from ..signals import Grid, SeriesInput
from .changes import Changes
from .durations import symptom_reach, to_first_symptom
from .measure import measure_changes
from .parameters import RootCauseParams
from .story import story_start
from .words import SYMPTOM_ROLES


@dataclass(frozen=True)
class Window:
    """Grid indices: the asked time, the window ``[start, end)`` and the baseline's start."""

    asked: int
    start: int
    end: int
    base: int

    @property
    def at(self) -> int:
        """The asked time in window steps (from ``start``)."""
        return self.asked - self.start


def window_of(
    grid: Grid, target_time_ms: int, window_ms: int, baseline_ms: int, p: RootCauseParams
) -> Window:
    """The window and baseline of an incident asked at ``target_time_ms`` (see the module
    docstring). Raises ``BadInputError`` when fewer than four steps of baseline or two of
    window fit in the grid."""
    step = grid.step_ms
    t_idx = min(grid.index(target_time_ms), grid.size - 1)
    ws = t_idx - window_ms // step
    b0 = max(0, ws - baseline_ms // step)
    if ws - b0 < 4:
        raise BadInputError(
            "too little data before the analysis window: the baseline needs at least four "
            "steps before time - window"
        )
    # after the incident time only what shows how changes that began before it develop
    reach = max(p.onset_slack, symptom_reach(p, step))  # the latest onset that can count
    we = min(grid.size, t_idx + 1 + max(reach, (t_idx - ws) // 3))
    if we - ws < 2:
        raise BadInputError("the analysis window holds fewer than two steps")
    return Window(t_idx, ws, we, b0)


def first_samples(series: Sequence[SeriesInput]) -> np.ndarray:
    """The grid index of each series' first sample (its length when it has none)."""
    out = np.empty(len(series), dtype=np.int64)
    for i, s in enumerate(series):
        seen = np.isfinite(np.asarray(s.values, dtype=np.float64))
        out[i] = int(np.argmax(seen)) if seen.any() else seen.size
    return out


def from_data_start(
    series: Sequence[SeriesInput], grid: Grid, window_start_ms: int, baseline_ms: int
) -> tuple[Sequence[SeriesInput], Grid, np.ndarray]:
    """``series`` and ``grid``, cut to begin at the first sample of any series when that is
    past half the baseline (``baseline_ms`` before ``window_start_ms``), and each series'
    :func:`first_samples` on the grid returned. Before that sample nothing at all was
    recorded: the data begin there, no series was born late, and the baseline is what was
    recorded before the window. (Asked with a 3 h baseline an hour after perfintel began
    collecting, every series would otherwise be a newcomer and none a candidate.) With half
    the baseline or more recorded, nothing is cut: its unrecorded start is filled as a series
    born inside it is (:func:`born_filled`, measured better so than on the shorter baseline).
    Nor when the data begin less than four steps before the window: no baseline at all,
    every series as young as the window (:func:`has_history` then leaves each out)."""
    first = first_samples(series)
    begin = int(first.min()) if first.size else 0
    ws = grid.index(window_start_ms)
    base = max(0, ws - baseline_ms // grid.step_ms)
    if begin <= base + (ws - base) // 2 or begin > ws - 4:
        return series, grid, first
    cut = [replace(s, values=np.asarray(s.values)[begin:]) for s in series]
    return cut, Grid(grid.time(begin), grid.step_ms, grid.size - begin), first - begin


def has_history(first: np.ndarray, w: Window) -> np.ndarray:
    """Whether each series (``first``: its :func:`first_samples`) was sampled by half way
    into the baseline: one born later (a new host, pod or process) has more of its baseline
    filled in from its first sample than seen, and a median and MAD of mostly one carried
    value call any move a 10⁹σ change."""
    return np.asarray(first <= w.base + (w.start - w.base) // 2)


def born_filled(
    x: np.ndarray, series: Sequence[SeriesInput], w: Window, first: np.ndarray
) -> np.ndarray:
    """``x`` with the baseline of each series born inside it (first sampled after ``w.base``)
    filled, before its birth, with its first observed values mirrored about it. A series has
    no values before it existed: carried back from its first sample, one value repeated over
    a third of the baseline shrinks its spread (MAD) and tilts its line, and its noise then
    reads as a change of tens of σ; mirrored, the filled part has the level, the noise and
    the step-to-step moves the series was seen to have. Only the baseline is filled, from
    the baseline (a series born past half of it is not a candidate: :func:`has_history`).
    ``first``: each series' :func:`first_samples`."""
    out = x
    for i, s in enumerate(series):
        if first[i] >= len(s.values):
            continue
        birth = int(first[i]) + (1 if s.counter else 0)  # a counter's first increase: one later
        fill = birth - w.base
        if fill <= 0 or birth + fill > w.start:
            continue
        if out is x:
            out = x.copy()
        out[i, w.base : birth] = x[i, birth : birth + fill][::-1]
    return out


def measured(
    x: np.ndarray,
    usable: np.ndarray,
    w: Window,
    baseline_steps: int,
    p: RootCauseParams,
    periods: Sequence[int],
    max_prop: int,
    roles: np.ndarray,
) -> tuple[Window, Changes]:
    """The changes of rows ``x`` over window ``w``, and the window they were measured over:
    opened back with ``story`` (``baseline_steps`` of baseline before it) when the largest
    symptom (by ``roles``) began within ``max_prop`` steps of its start or before."""
    lead = int(p.lead * w.at)
    ch = measure_changes(x, usable, w.start, w.end, w.base, p, periods, lead, rise=True)
    if (opened := story_start(p.story, w.start, w.at, max_prop, ch, roles)) < w.start:
        w = replace(w, start=opened, base=max(0, opened - baseline_steps))  # the symptoms' story
        ch = measure_changes(x, usable, w.start, w.end, w.base, p, periods, lead, rise=True)
    return w, ch


def slacks(
    p: RootCauseParams, step_ms: int, w: Window, ch: Changes, roles: np.ndarray
) -> tuple[RootCauseParams, int, int]:
    """``p`` with ``onset_slack`` opened to the first symptom, and the latest onsets (window
    steps) of a cause and of a symptom cause: the asked time plus that slack, and plus the
    slack ``p`` had (a symptom later than that is an effect)."""
    sym_slack = w.at + p.onset_slack
    p = to_first_symptom(p, step_ms, w.at, ch.onset, ch.changed, roles)
    return p, w.at + p.onset_slack, sym_slack


def late(
    onset: np.ndarray, tol: np.ndarray, roles: np.ndarray, slack: int, sym_slack: int
) -> np.ndarray:
    """Which changes (``onset``, window steps; ``tol``, its uncertainty; ``roles``) began
    after the latest onset that counts, beyond their onset's uncertainty: ``slack`` for a
    cause, ``sym_slack`` for a symptom (latency, errors)."""
    latest = np.where(np.isin(roles, SYMPTOM_ROLES), sym_slack, slack)
    return np.asarray(onset - tol + 0.5 > latest)
