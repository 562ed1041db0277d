"""Back-dating a gradual change: it began where the line of its rise meets its baseline.

Principle 2 of :mod:`~perfintel.analysis.rootcause` dates a change at the
first step of its departure beyond ``max(onset_sigma, onset_fraction × peak)``.
For a step that is the step. For a ramp (a leak, a queue filling, a slow
drift) it is not where the change began but where it became visible: the
rise starts at the baseline and stays inside the noise for a while, and how
long depends on its slope against the noise. Two ramps, or a ramp and the
sharp symptom it eventually causes, are then ordered by how fast they rose,
not by when they began: a leak slow against a noisy memory series is dated
several steps after the errors it caused.

With ``backdate`` (a fraction of the peak) on, a change whose rise from that
first step to ``backdate`` × its peak took at least three steps is dated where
the least-squares line fitted to that stretch of its z-score path meets zero
(its baseline) — the classic back-extrapolation of a growth curve to its
start, which uses every step of the rise instead of the first to cross a
threshold and does not depend on the slope against the noise. The date is
never later than the threshold's (a change cannot have begun after it was
seen), never earlier than the window start, nor earlier than the threshold's
by more than the rise itself took (a line fitted to a curved rise, a ramp
that steepens, extrapolates too far back). A sharp change (fewer than three
steps to reach the fraction) keeps its threshold date.

Unlike the cumulative sum tried in round 8 (which accumulates departures
from the baseline, so its date still depends on the noise the early rise
hides in), the extrapolation reads the start from the shape of the rise
only, and only for gradual changes (ramps: :func:`~perfintel.analysis.rootcause.ranking._shape` at the
threshold date), and only over steps the data shows above the baseline.
Off by default: it dates roots within 0–2 steps of their true start on the tuning generators,
but moves the effects and backgrounds that are ramps as much, and out of fold it won 9
incidents and lost 10 (BENCHMARKS.md, round 13b).
Pure: arrays in, index out.
"""

from __future__ import annotations

import numpy as np

#: fewest steps of a rise fitted (fewer: a sharp change, dated at its threshold)
MIN_RISE = 3
#: the steps a date moves back over must together be this many sigmas above the baseline
EVIDENCE = 2.0


def backdated(z: np.ndarray, onset: int, peak_at: int, fraction: float) -> int:
    """The onset (window index) of the change of z-score path ``z`` peaking at ``peak_at``,
    first seen at ``onset``: where the line through its rise from ``onset`` to ``fraction`` ×
    its peak meets zero, for a rise of at least :data:`MIN_RISE` steps (see the module
    docstring); ``onset`` otherwise."""
    if fraction <= 0 or onset < 0 or peak_at <= onset:
        return onset
    sign = 1.0 if z[peak_at] >= 0 else -1.0
    v = sign * z[onset : peak_at + 1]
    reach = int(np.argmax(v >= fraction * float(v[-1])))
    if reach + 1 < MIN_RISE:
        return onset
    t = np.arange(reach + 1, dtype=np.float64)
    slope, icpt = np.polyfit(t, v[: reach + 1], 1)
    if not slope > 0:
        return onset
    # the first step at or past where the line meets zero
    start = int(np.ceil(-icpt / slope - 1e-9))
    if onset + start < 0:  # began before the window: where is not seen (see ``lead``)
        return onset
    first = int(np.clip(onset + start, onset - reach, onset))
    # only as far back as the data shows the rise: the steps skipped lie above the baseline
    # together (their summed z over the root of their number at least EVIDENCE)
    w = sign * z[first:onset]
    run = np.cumsum(w[::-1])[::-1] / np.sqrt(np.arange(w.size, 0, -1))
    shown = np.flatnonzero(run >= EVIDENCE)
    return first + int(shown[0]) if shown.size else onset
