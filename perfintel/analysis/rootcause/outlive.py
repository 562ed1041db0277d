"""An effect lasts no longer than its cause: a change that came back does not explain one that stayed.

Without a stock in between, a dependency passes on a fault only while the
fault lasts: a CPU that saturated for five minutes slows its callers for those
five minutes (and one hop's delay), and a dependency that recovered stops
causing errors in what calls it. So a change ``i`` that came back to its
baseline before the incident time (its last step departed by
``max(onset_sigma, fraction × |peak|)``, as ``bygone`` reads "came back", lies
before the incident) cannot be why a change ``j`` was still
departed more than one propagation bound after ``i`` came back: ``j`` has
another cause. The exceptions are links that go through a stock
(``accumulation``, ``exhaustion``, a shared stock): a leak's harm outlives the
leak's growth, and those links are kept (the ranking adds them apart).

It is meant to keep a transient of another entity — a traffic burst, a CPU
spike, an errors blip that came and went well before the alert — from taking
a symptom that lasted as its effect by a chance link, and with it the first
place (its size no longer backed by what it "explains", ``bygone`` then ranks
it after the changes present at the alert). Measured on the tuning generators
(BENCHMARKS.md round 20) it mostly fires on cascades whose effects recover
more slowly than their cause at the same fraction of their peaks (queues
drain, counters smear), which is why it is off. Pure: arrays in, a boolean
matrix out.
"""

from __future__ import annotations

import numpy as np

from .pairs import active_until


def outlived(
    z: np.ndarray,
    peak: np.ndarray,
    onset_sigma: float,
    fraction: float,
    before: int,
    max_prop: int,
) -> np.ndarray:
    """``[i, j]``: change ``i`` (row of the z-score paths ``z``, signed peaks ``peak``) came
    back before step ``before`` (its last step departed by ``max(onset_sigma, fraction ×
    |peak|)``) and change ``j`` stayed departed by its own level more than ``max_prop``
    steps after that — ``i`` cannot be why ``j`` lasted. All False when ``fraction`` is 0."""
    k = peak.size
    if fraction <= 0 or k == 0:
        return np.zeros((k, k), dtype=bool)
    until = active_until(z, peak, onset_sigma, fraction)
    gone = (until >= 0) & (until < before)
    return gone[:, None] & (until[None, :] > until[:, None] + max_prop)
