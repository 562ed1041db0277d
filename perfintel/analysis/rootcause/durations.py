"""Durations of the ranking counted in time instead of samples (each option 0 = samples).

Three constants of the ranking mean durations but were counted in samples, written for
one-minute steps: how long after the asked time a change may begin and still count as a
cause (``onset_slack``, one step), how uncertain a ramp's onset is (a quarter of its rise,
clipped to one to three steps) and how long a spike must be seen back to normal (two
samples). On 15-second samples those are 15 seconds, 15 to 45 seconds and 30 seconds; on
5-minute samples 5, 5 to 15 and 10 minutes. Each option counts its duration in minutes at
the data's step instead (``RootCauseParams.slack_minutes``, ``tolerance_minutes``,
``spike_return_minutes``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .parameters import RootCauseParams
from .words import SYMPTOM_ROLES

MINUTE_MS = 60_000


def _steps(minutes: float, step_ms: int) -> float:
    return minutes * MINUTE_MS / max(1, step_ms)


def in_time(p: RootCauseParams, step_ms: int) -> RootCauseParams:
    """``p`` with ``onset_slack`` as the steps ``slack_minutes`` take at ``step_ms`` (at least
    one: the step that holds the asked time), when that option is on."""
    if p.slack_minutes <= 0:
        return p
    slack = max(1, int(-(-p.slack_minutes * MINUTE_MS // max(1, step_ms))))
    return replace(p, onset_slack=slack)


def symptom_reach(p: RootCauseParams, step_ms: int) -> int:
    """Steps after the asked time the first symptom may open the slack to (``symptom_minutes``
    at ``step_ms``, at least one; 0 when that option is off)."""
    if p.symptom_minutes <= 0:
        return 0
    return max(1, int(-(-p.symptom_minutes * MINUTE_MS // max(1, step_ms))))


def counted_after_ms(p: RootCauseParams, step_ms: int) -> int:
    """How long after the asked time a change may begin and still count as a cause, at most
    (``onset_slack`` steps, ``slack_minutes``, ``symptom_minutes``): the data a caller must
    fetch past the asked time for it to be seen."""
    q = in_time(p, step_ms)
    return max(q.onset_slack, symptom_reach(q, step_ms)) * max(1, step_ms)


def to_first_symptom(
    p: RootCauseParams,
    step_ms: int,
    asked: int,
    onset: np.ndarray,
    changed: np.ndarray,
    roles: np.ndarray,
) -> RootCauseParams:
    """``p`` with ``onset_slack`` opened to the first symptom, when ``symptom_minutes`` is on: the
    latest onset that counts is the later of the asked time plus the slack and the onset of the
    first symptom (a change, ``changed``, of latency or errors by ``roles``, each series'
    ``ROLE_ORDER``, -1 unknown; onsets ``onset`` in steps like ``asked``) that began after the
    asked time, capped at ``symptom_minutes`` after it. A cause begins no later than the first
    symptom: asked when a fault begins (its injection, before anything shows), its root may be
    dated a step or more later and its leaks later still.
    (The ranking keeps a symptom begun past the slack late: an effect, not a cause.)"""
    reach = symptom_reach(p, step_ms)
    if reach <= 0:
        return p
    symptom = changed & np.isin(roles, SYMPTOM_ROLES)
    later = onset[symptom & (onset > asked)]
    if not later.size:
        return p
    return replace(p, onset_slack=max(p.onset_slack, min(int(later.min()) - asked, reach)))


def ramp_clip(p: RootCauseParams, step_ms: int) -> tuple[float, float]:
    """Bounds of a ramp's onset uncertainty, in steps: 1 to 3 steps, or with
    ``tolerance_minutes`` on, 1 to 3 times that many minutes (never below a sharp change's)."""
    if p.tolerance_minutes <= 0:
        return 1.0, 3.0
    lo = max(p.sharp_tolerance, _steps(p.tolerance_minutes, step_ms))
    return lo, max(lo, 3.0 * _steps(p.tolerance_minutes, step_ms))


def spike_return(p: RootCauseParams, step_ms: int) -> int:
    """Samples a spike must be seen back below 3σ: two, or with ``spike_return_minutes`` on,
    the samples those minutes take at ``step_ms`` (at least one)."""
    if p.spike_return_minutes <= 0:
        return 2
    return max(1, int(-(-p.spike_return_minutes * MINUTE_MS // max(1, step_ms))))
