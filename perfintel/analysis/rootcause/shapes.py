"""The shape of a change (spike, ramp, saturation, shift), its tests counted in time.

The shape tests were written for one-minute samples: a spike is back within five samples,
a ramp is drawn through at least eight, a saturation holds its extreme over its last five.
On a two- or five-minute scrape interval those counts mean 10 to 40 minutes, more than a
30-minute window holds after most onsets: a pool stuck at its cap is not read as
saturated (so it ties with the latency it causes instead of explaining it), a leak is
never a ramp, and a 20-minute shift reads as a spike. So each count is the lesser of its
samples and as many samples as its minutes take at the data's step — at one-minute steps
and finer the samples, as before, so rankings there are unchanged — floored where the test
needs more points to mean anything (a line through four, a plateau of two).
"""

from __future__ import annotations

import numpy as np

MINUTE_MS = 60_000
#: a spike's departure (beyond 3σ) ends within this many samples/minutes of its onset
SPIKE = 5
#: a ramp is fitted over at least this many samples/minutes after its onset (at least 4)
RAMP = 8
#: a saturation holds its extreme over its last this many samples/minutes (at least 2)
PLATEAU = 5


def samples(count: int, step_ms: int, least: int) -> int:
    """``count`` samples, or the samples ``count`` minutes take at ``step_ms`` when fewer
    (never below ``least``)."""
    return max(least, min(count, -(-count * MINUTE_MS // max(1, step_ms))))


def shape(
    z: np.ndarray, onset: int, values: np.ndarray, step_ms: int = MINUTE_MS, back: int = 2
) -> str:
    """``spike``, ``ramp``, ``saturation`` or ``shift``, from the path ``z`` after ``onset``
    (``values``: the series over the same steps, for a plateau at its extreme; ``back``: the
    samples a spike is seen back below 3σ)."""
    sign = 1.0 if z[int(np.argmax(np.abs(z)))] >= 0 else -1.0
    after = sign * z[onset:]
    if after.size == 0:
        return "shift"
    high = np.flatnonzero(after > 3.0)
    if high.size and high[-1] < samples(SPIKE, step_ms, 1) and after.size > high[-1] + back:
        return "spike"
    if after.size >= samples(RAMP, step_ms, 4) and np.std(after) > 0:
        c = float(np.corrcoef(np.arange(after.size), after)[0, 1])
        top = float(after.max())
        if c > 0.9 and after[-1] >= 0.8 * top and after[0] < 0.5 * top:
            return "ramp"
    plateau = samples(PLATEAU, step_ms, 2)
    if after.size >= plateau:
        tail = values[onset:][-plateau:]
        extreme = np.max(values) if sign > 0 else np.min(values)
        if np.all(tail == extreme) or (np.ptp(tail) == 0 and after[-1] > 3):
            return "saturation"
    return "shift"
