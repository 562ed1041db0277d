"""The change profile of each candidate series: what the root-cause ranking measures first.

Filled by :mod:`~perfintel.analysis.rootcause.measure` (``measure_changes``) and, for a leak
that began inside the baseline, re-measured by
:mod:`~perfintel.analysis.rootcause.rise` (through a callback); a module of its own so that
both can name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Changes:
    """Per-series change profiles over the analysis window (rows: series)."""

    z: np.ndarray
    expected: np.ndarray
    peak: np.ndarray  # signed peak z
    peak_at: np.ndarray  # window index of the peak
    onset: np.ndarray  # window index of the onset
    changed: np.ndarray  # bool
    tail: np.ndarray  # the baseline's largest |z|
    base_z: np.ndarray = field(repr=False)  # the baseline's z-scores
    #: rows dated before the window (negative onset): their z-score path and values from
    #: ``lead`` steps before the window start (for their shape)
    early: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lead: int = 0
