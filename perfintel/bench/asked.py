"""Generated incidents asked at another time, or sampled less often: same faults, same truth.

The root-cause benchmark asks every generated incident at its exact alert time on the
generator's own sampling step. Users and other generators do neither: ``perfintel analyze
root-cause`` asks at *now*, minutes after the alert fired; another generator may give the
fault's injection time, the end of its data or the time symptoms peaked; and Prometheus
scrapes every 10 s to 5 min. These transforms measure how much accuracy depends on both.

* :func:`asked` — the time passed to the ranking (``Incident.time_ms``) moved:

  - ``at-alert``: the alert time (what the benchmark asks);
  - ``end``: the last sample of the incident's data;
  - ``onset``: the root's fault onset, ``Incident.onset_ms``, which every generator records
    from its own ground truth (``incidents``: the drawn ``onset`` step; ``incidents_blind``:
    the fault's ``onset`` step), snapped down to the incident's grid;
  - ``+Nm``: ``N`` minutes after the alert, only when the data reach that far (``None``
    otherwise: the incident cannot be asked so and is left out, and counted).

  Nothing else changes: values, series, root, onset and the alert time as the truth.
* :func:`coarsened` — every ``k`` samples folded into one, as a scrape at ``k`` times the
  interval (or a downsampling recording rule) would give: a gauge's coarse sample is the mean
  of its ``k`` samples that were scraped (``NaN`` only when all ``k`` were missed); a
  counter's is its last sample, the value a scrape at that instant sees (``NaN`` when that one
  scrape was missed: a longer interval does not see the samples between). Groups are taken
  from the first sample and stamped at their last one; samples after the last whole group are
  dropped. Series order, hence ``root``, ``affected`` and ``background``, is unchanged and the
  times of the truth (onset, alert) stay times: the ranking reads them on the coarse grid,
  whose sample at a time covers the ``k`` fine steps up to it.
* :func:`later_profile` — an in-house profile with ``minutes`` more data after the alert
  (``after_steps`` raised): the same generator, with room to ask later.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from perfintel.analysis.signals import SeriesInput
from perfintel.bench.incidents import Incident, IncidentProfile

MINUTE_MS = 60_000
#: the ask settings the benchmarks know, besides ``+Nm``
ASK_FIXED = ("at-alert", "end", "onset")
_LATER = re.compile(r"^\+(\d+)m$")


def ask_time(inc: Incident, how: str) -> int | None:
    """The time ``how`` asks ``inc`` at, or ``None`` when its data do not reach it."""
    last = inc.start_ms + inc.step_ms * (len(inc.series[0].values) - 1)
    if how == "at-alert":
        return inc.time_ms
    if how == "end":
        return last
    if how == "onset":
        return inc.start_ms + (inc.onset_ms - inc.start_ms) // inc.step_ms * inc.step_ms
    later = _LATER.match(how)
    if later is None:
        raise ValueError(f"unknown ask setting {how!r} (at-alert, end, onset or +Nm)")
    t = inc.time_ms + int(later.group(1)) * MINUTE_MS
    return t if t <= last else None


def asked(inc: Incident, how: str) -> Incident | None:
    """``inc`` asked at the time ``how`` says (``None``: its data do not reach that time)."""
    t = ask_time(inc, how)
    return None if t is None else replace(inc, time_ms=t)


def later_minutes(how: str) -> int:
    """Minutes after the alert ``how`` asks at (0 for the other settings)."""
    later = _LATER.match(how)
    return int(later.group(1)) if later else 0


def coarsen_values(values: np.ndarray, k: int, counter: bool) -> np.ndarray:
    """``values`` with every ``k`` samples as one (see the module docstring)."""
    n = values.size // k
    groups = np.asarray(values[: n * k], dtype=np.float64).reshape(n, k)
    if counter:
        return groups[:, -1].copy()
    scraped = np.isfinite(groups)
    count = scraped.sum(axis=1)
    total = np.where(scraped, groups, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def coarsened(inc: Incident, k: int) -> Incident:
    """``inc`` sampled ``k`` times less often (``k`` = 1: itself)."""
    if k < 1:
        raise ValueError("coarsen by a factor of at least 1")
    if k == 1:
        return inc
    series = [
        SeriesInput(s.labels, coarsen_values(s.values, k, s.counter), s.counter) for s in inc.series
    ]
    return replace(
        inc,
        series=series,
        start_ms=inc.start_ms + (k - 1) * inc.step_ms,
        step_ms=k * inc.step_ms,
    )


def later_profile(profile: IncidentProfile, minutes: int) -> IncidentProfile:
    """``profile`` with at least ``minutes`` more of data after the alert (same name: the
    generator's random draws are the same, the fault lies that much earlier in the span)."""
    extra = -(-minutes * 60 // profile.step_s)
    lo, hi = profile.after_steps
    return replace(profile, after_steps=(lo + extra, hi + extra))


def transform(ask: str = "at-alert", coarsen: int = 1) -> Callable[[Incident], Incident | None]:
    """Coarsen by ``coarsen``, then ask as ``ask`` says (``None``: cannot be asked so)."""
    ask_time(_PROBE, ask)  # an unknown setting fails before any incident is generated
    return lambda inc: asked(coarsened(inc, coarsen), ask)


_PROBE = Incident(0, "", "", 0, MINUTE_MS, [SeriesInput((), np.zeros(1), False)], 0, 0, 0, [], [])
