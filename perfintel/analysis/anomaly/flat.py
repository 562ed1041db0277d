"""Changes of a series that had been constant, told as what they are.

A series that sat on one value for hours (a queue at 0, a gauge stuck at 3) has a
learnt spread of ~0, so "n× the usual spread" is meaningless for its first move (it
was 1e9×). The kernel keeps its band at least at the spread of the series'
resolution (the finest grid step its values were seen on, ``steps.series_grid``,
given as the ensemble's ``grid`` output); this module says in words, and grades, a
change whose learnt spread was below that: from what value, since when, to what,
in steps of the resolution — and its severity from the resolution-bounded
``anomaly_score`` alone (the NAB score of such a step is saturated whatever its size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from perfintel.timeparse import format_duration_ms

#: a shorter run of equal samples is not told as "constant" (the seasonal baseline's
#: first 30 samples learn unclipped; a few equal counts in a row are noise)
MIN_RUN = 30


@dataclass(frozen=True)
class ConstantRun:
    """The samples of one value right before a change: ``count`` samples at ``value``
    from ``start_ms`` until the change at ``end_ms``; ``from_first``: the run starts at
    the first sample looked at (it may have started earlier)."""

    start_ms: int
    end_ms: int
    value: float
    count: int
    from_first: bool


def constant_run(ts: np.ndarray, values: np.ndarray, end: int) -> ConstantRun | None:
    """The run of samples equal to ``values[end - 1]`` before the change at ``end`` (None
    when shorter than ``MIN_RUN`` samples)."""
    if end < MIN_RUN or end > len(values):
        return None
    last = values[end - 1]
    differs = np.flatnonzero(values[:end] != last)
    start = int(differs[-1]) + 1 if len(differs) else 0
    if end - start < MIN_RUN:
        return None
    until = int(ts[end]) if end < len(ts) else int(ts[end - 1])
    return ConstantRun(int(ts[start]), until, float(last), end - start, start == 0)


def below_resolution(sigma: float, grid: float) -> bool:
    """Whether the learnt spread ``sigma`` is below the spread of rounding to the series'
    grid step ``grid`` (q/sqrt(12)): the series had (almost) never moved, and the band is
    the resolution's."""
    return bool(sigma < grid / math.sqrt(12.0))


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"


def describe(value: float, expected: float, run: ConstantRun | None, grid: float) -> str:
    """The change in words: ``constant at 0 for 2d (since …), now 1: a change of +1 (…)``;
    without the run (or when the value is still the run's), from ``expected``; its size
    in steps of the series' grid ``grid``."""
    base = run.value if run is not None and run.value != value else expected
    q = grid
    if run is not None and run.value != value:
        since = datetime.fromtimestamp(run.start_ms / 1000.0, tz=UTC).strftime("%Y-%m-%d %H:%M")
        span = format_duration_ms(max(run.end_ms - run.start_ms, 0))
        least, earlier = ("at least ", " or earlier") if run.from_first else ("", "")
        origin = f"constant at {_fmt(run.value)} for {least}{span} (since {since} UTC{earlier})"
    else:
        origin = (
            f"expected {_fmt(expected)} of a series that had barely moved "
            "(a learnt spread below its resolution)"
        )
    delta = value - base
    steps = abs(delta) / q
    if steps < 1:
        size = f"less than its resolution {_fmt(q)}"
    else:
        size = f"{steps:.4g} step{'s' if steps != 1 else ''} of its resolution {_fmt(q)}"
    return f"{origin}, now {_fmt(value)}: a change of {delta:+.4g} ({size})"
