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
* :func:`perturbed` — the data faults real Prometheus scrapes have and the generators lack
  (:data:`PERTURBATIONS`), drawn from the incident's seed and the fault's name (the same
  incident is perturbed the same way every time); the truth (root, affected, background,
  onset, alert) is unchanged, and series are only appended, never reordered:

  - ``gaps``: missed scrapes: every series loses runs of 1-5 samples (NaN), ``rate`` of its
    steps on average, and one series in 20 a longer gap (10-30 steps) somewhere in the
    baseline or the window (never the first or last sample);
  - ``resets``: counter resets: ``rate`` of the counters other than the root restart from 0
    once, at a random step of the baseline or the window (a process restart: the counter
    counts again from an instant inside that step);
  - ``late``: ``rate`` of the background series (of services the fault does not reach) are
    born part-way through the baseline (its first 10-40 % and everything before, NaN);
  - ``noise``: ``rate`` × as many more background series: copies of background series (those
    without a planted anomaly) under another instance label, rescaled, with their own noise,
    and as many of them as of the
    incident's background series with a step, spike or ramp of their own near the incident
    (more distractors, at the incident's own rate of unrelated anomalies);
  - ``recent``: collection began ``rate`` of the way into the baseline: every series is NaN
    before (asked an hour after perfintel started, with the default 3 h baseline; the
    default, two thirds, leaves an hour of baseline).

  The baseline and window are the benchmark's (:data:`WINDOW_MS`, :data:`BASELINE_MS`
  before the alert).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from perfintel.analysis.signals import SeriesInput, per_step_increase
from perfintel.bench.incidents import Incident, IncidentProfile
from perfintel.model import label_set, metric_name

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


#: the benchmark's window and baseline (where resets and long gaps fall)
WINDOW_MS, BASELINE_MS = 30 * MINUTE_MS, 180 * MINUTE_MS
#: each data fault and its default rate (see the module docstring)
PERTURBATIONS = {"gaps": 0.02, "resets": 0.3, "late": 0.2, "noise": 0.5, "recent": 0.67}
_COUNTER_NAMES = ("_total", "_count", "_sum", "_bucket")


def perturbation(spec: str) -> tuple[str, float]:
    """``NAME[:rate]`` (``none`` or empty: no perturbation) as its name and rate."""
    name, _, rate = spec.partition(":")
    if name in ("", "none"):
        return "none", 0.0
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r} ({', '.join(PERTURBATIONS)} or none)")
    value = float(rate) if rate else PERTURBATIONS[name]
    if not 0.0 <= value <= (10.0 if name == "noise" else 1.0):
        raise ValueError(f"perturbation rate out of range: {spec!r}")
    return name, value


def perturbed(inc: Incident, spec: str) -> Incident:
    """``inc`` with the data fault ``spec`` (``NAME[:rate]``, see the module docstring)."""
    name, rate = perturbation(spec)
    if name == "none":
        return inc
    rng = np.random.default_rng([inc.seed, list(PERTURBATIONS).index(name), 0x5EED])
    n = len(inc.series[0].values)
    t = min(max((inc.time_ms - inc.start_ms) // inc.step_ms, 0), n - 1)
    ws = max(t - WINDOW_MS // inc.step_ms, 1)
    b0 = max(1, ws - BASELINE_MS // inc.step_ms)
    if name == "gaps":
        return replace(inc, series=[_gapped(rng, s, rate, b0, t) for s in inc.series])
    if name == "resets":
        return replace(inc, series=_reset(rng, inc, rate, b0, t))
    if name == "late":
        late = {i for i in _background(inc) if rng.random() < rate}
        out = list(inc.series)
        for i in sorted(late):
            v = out[i].values.copy()
            v[: b0 + int(rng.uniform(0.1, 0.4) * (ws - b0))] = np.nan
            out[i] = replace(out[i], values=v)
        return replace(inc, series=out)
    if name == "recent":
        begin = b0 + int(rate * (ws - b0))
        cut = [
            replace(s, values=np.r_[np.full(begin, np.nan), s.values[begin:]]) for s in inc.series
        ]
        return replace(inc, series=cut)
    return _more_background(rng, inc, rate, b0, t)


def is_counter(s: SeriesInput) -> bool:
    """A counter by its flag or its name (``_total``, ``_count``, ``_sum``, ``_bucket``)."""
    return s.counter or metric_name(s.labels).endswith(_COUNTER_NAMES)


def _gapped(rng: np.random.Generator, s: SeriesInput, rate: float, b0: int, t: int) -> SeriesInput:
    n = s.values.size
    v = np.array(s.values, dtype=np.float64)
    runs = int(rng.binomial(n, rate / 3.0))  # runs of 1-5 samples: 3 on average
    for start, length in zip(rng.integers(1, n - 1, runs), rng.integers(1, 6, runs), strict=True):
        v[start : min(start + length, n - 1)] = np.nan
    if rng.random() < 0.05:  # one series in 20: a longer gap in the baseline or the window
        start, length = int(rng.integers(b0, t + 1)), int(rng.integers(10, 31))
        v[start : min(start + length, n - 1)] = np.nan
    return replace(s, values=v)


def _reset(
    rng: np.random.Generator, inc: Incident, rate: float, b0: int, t: int
) -> list[SeriesInput]:
    out = list(inc.series)
    for i, s in enumerate(inc.series):
        if i == inc.root or not is_counter(s) or rng.random() >= rate:
            continue
        r = int(rng.integers(b0, t + 1))
        v = np.array(s.values, dtype=np.float64)
        inc_r = per_step_increase(v)[r]
        before = v[r - 1] if np.isfinite(v[r - 1]) else np.nanmax(v[:r], initial=0.0)
        since = before + float(rng.uniform(0.0, 1.0)) * (inc_r if np.isfinite(inc_r) else 0.0)
        v[r:] = np.maximum(v[r:] - since, 0.0)  # counts again from 0 at an instant in step r
        out[i] = replace(s, values=v)
    return out


def _services_reached(inc: Incident) -> set[str]:
    return {_service(inc.series[i]) for i in inc.affected} | {_service(inc.series[inc.root])}


def _service(s: SeriesInput) -> str:
    named = dict(s.labels)
    return named.get("service", named.get("service_name", ""))


def _background(inc: Incident) -> list[int]:
    """Series of services the fault does not reach (by their service label)."""
    reached = _services_reached(inc)
    return [
        i
        for i, s in enumerate(inc.series)
        if i != inc.root
        and i not in inc.affected
        and (_service(s) not in reached or not _service(s))
    ]


def _more_background(
    rng: np.random.Generator, inc: Incident, rate: float, b0: int, t: int
) -> Incident:
    pool = _background(inc)
    if not pool:
        return inc
    series, background = list(inc.series), list(inc.background)
    n = len(inc.series[0].values)
    # an anomaly of its own as often as the incident's background series have one
    odds = min(1.0, len(inc.background) / len(pool))
    # copies of series without a planted anomaly: a copy's anomaly is its own, independent
    clean = [i for i in pool if i not in inc.background] or pool
    for k in range(round(rate * len(pool))):
        s = inc.series[int(rng.choice(clean))]
        named = dict(s.labels)
        key = "instance" if "instance" in named else "replica"
        named[key] = f"{named.get(key, 'r')}-copy{k}"
        level = per_step_increase(s.values) if s.counter else np.array(s.values, dtype=np.float64)
        base = level[np.isfinite(level)]
        spread = float(np.std(np.diff(base))) / np.sqrt(2) if base.size > 2 else 0.0
        spread += 1e-9 * (abs(float(np.mean(base))) + 1.0) if base.size else 1e-9
        level = level * float(rng.uniform(0.5, 2.0)) + rng.standard_normal(n) * spread
        if rng.random() < odds:  # an anomaly of its own near the incident
            start = int(rng.integers(max(b0, t - 45), min(n - 1, t + 5)))
            size = float(rng.uniform(6, 25)) * spread * (1 if rng.random() < 0.7 else -1)
            since = np.arange(n) - start
            shape = int(rng.integers(0, 3))
            if shape == 0:
                level = level + np.where(since >= 0, size, 0.0)
            elif shape == 1:
                level = level + np.where(
                    (since >= 0) & (since < int(rng.integers(1, 4))), 2 * size, 0.0
                )
            else:
                level = level + np.where(since >= 0, size * since / 10, 0.0)
            background.append(len(series))
        if np.all(base >= 0):
            level = np.maximum(level, 0.0)
        if s.counter:
            first = float(s.values[0]) if np.isfinite(s.values[0]) else 0.0
            level = np.r_[first, first + np.cumsum(np.nan_to_num(level[1:]))]
        series.append(SeriesInput(label_set(named), level, s.counter))
    return replace(inc, series=series, background=sorted(background))


def transform(
    ask: str = "at-alert", coarsen: int = 1, perturb: str = ""
) -> Callable[[Incident], Incident | None]:
    """Perturb as ``perturb`` says, coarsen by ``coarsen``, then ask as ``ask`` says
    (``None``: cannot be asked so)."""
    ask_time(_PROBE, ask)  # an unknown setting fails before any incident is generated
    perturbation(perturb)
    return lambda inc: asked(coarsened(perturbed(inc, perturb), coarsen), ask)


_PROBE = Incident(0, "", "", 0, MINUTE_MS, [SeriesInput((), np.zeros(1), False)], 0, 0, 0, [], [])
