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

from .parameters import RootCauseParams

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
