"""A change that began inside the baseline: its history of outliers is what came before it.

Arrays in, arrays out (rows: series). :mod:`~perfintel.analysis.rootcause`
calls a series *changed* when its peak in the window is beyond the largest
|z| its baseline reached. A leak or a filling pool that began before the
window, inside the baseline, and never came back sets that largest |z|
itself: the window holds it at the same height, so the tail test rejects it
and ``lead`` (which re-measures only changes) never sees it. Here such a
series — past ``min_sigma``, under way when the window opens and departed
over the whole window (it never came back), its baseline's largest |z|
inside the final run that departs toward its peak and runs on into the
window — is measured again against the baseline *before that run
began* (a window opened ``rise`` window lengths before it, at least two
steps), and is a change when it is one there, dated where it began.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .changes import Changes
from .parameters import RootCauseParams

#: ``measure(rows, start)``: change profiles of ``rows`` over ``[start, we)`` against the
#: baseline's length before ``start``, which were under way at ``start``, and their values
Measure = Callable[[np.ndarray, int], tuple[Changes, np.ndarray, np.ndarray]]


def rise_start(base_z: np.ndarray, sign: float, half: float) -> int | None:
    """Where the final run of a baseline's z-scores at least ``half`` toward ``sign`` began
    (index into ``base_z``), when that run holds the baseline's largest |z|; else ``None``."""
    v = sign * base_z
    below = np.flatnonzero(v < half)
    start = int(below[-1]) + 1 if below.size else 0
    if start >= v.size or int(np.argmax(np.abs(base_z))) < start:
        return None
    return start


def risen(
    ch: Changes,
    under_way: np.ndarray,
    ws: int,
    b0: int,
    p: RootCauseParams,
    measure: Measure,
) -> None:
    """Mark in ``ch`` (in place) the rows whose change began in the baseline (module docstring).

    ``under_way`` marks the rows whose departure never came back from the window start to
    their peak.
    """
    win = ch.z.shape[1]
    # still departed over the whole window: it never came back (a spike or a shift that began
    # just before the window and ended in it is not a rise that runs on)
    held = (np.sign(ch.peak)[:, None] * ch.z).min(axis=1) >= p.onset_sigma / 2
    cand = ~ch.changed & under_way & held & (np.abs(ch.peak) >= p.min_sigma)
    for r in (int(i) for i in np.flatnonzero(cand)):
        k0 = rise_start(ch.base_z[r], float(np.sign(ch.peak[r])), p.onset_sigma / 2)
        if k0 is None:
            continue
        start = b0 + k0 - max(2, round(p.rise * win))
        if start < 8:
            continue  # no baseline before the rise to measure it against
        lead = ws - start
        ext, began_before, values = measure(np.array([r]), start)
        wz = ext.z[0, lead:]
        at = int(np.argmax(np.abs(wz)))
        # where it began is seen (it was back within onset_sigma / 2 before), it is a change
        # against that baseline, and the window still holds its peak (a saturation holds it)
        if not (ext.changed[0] and not began_before[0] and 0 <= ext.onset[0] < lead):
            continue
        if abs(wz[at]) < max(p.min_sigma, p.tail_factor * float(ext.tail[0])):
            continue
        ch.z[r] = wz
        ch.expected[r] = ext.expected[0, lead:]
        ch.peak[r] = wz[at]
        ch.peak_at[r] = at
        ch.onset[r] = int(ext.onset[0]) - lead
        ch.changed[r] = True
        ch.early[r] = (ext.z[0], values[0])


def before_window(
    z: np.ndarray, onset: np.ndarray, early: list[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Window z-scores ``z`` (rows) extended back over the steps before the window that the
    changes dated there were measured on (``early[k]``: row ``k``'s path from its own earlier
    start to the window's end, or ``None``; other rows read 0 there), and ``onset`` shifted to
    match: so that what happened before the window (a pool full before its pod's latency rose
    there) is seen by tests on the paths."""
    lead = max((e.size - z.shape[1] for e in early if e is not None), default=0)
    ext = np.zeros((z.shape[0], lead + z.shape[1]))
    ext[:, lead:] = z
    for k, e in enumerate(early):
        if e is not None:
            ext[k, lead + z.shape[1] - e.size :] = e
    return ext, onset + lead
