"""Compilation entry points of the detector's one implementation.

Every model's arithmetic is a set of scalar functions compiled by numba
(``jit.py``); ``Detector``, ``OnlineRunner``, the detect API and the NAB
evaluation all call the same compiled loops. numba compiles on first use and
caches the machine code on disk; ``warm_up`` (alias ``warm``) compiles (or
loads) every loop now, so a service can pay it at start-up instead of on its
first request.

``set_enabled``/``enabled`` (the ``anomaly.kernel`` setting) choose how the
detect API batches its series: one call per series (on) or all series in one
interleaved call (off) — the same code, the same numbers.
"""

from __future__ import annotations

import time

import numpy as np

from perfintel.analysis.anomaly.base import VectorModel
from perfintel.analysis.anomaly.jit import COMPILED

_switched_on = True


def set_enabled(flag: bool) -> None:
    """Per-series calls in the detect API (on) or one interleaved call (off)."""
    global _switched_on
    _switched_on = flag


def enabled() -> bool:
    return _switched_on


def compiled() -> bool:
    """Whether the loops run compiled (numba present, its JIT not disabled)."""
    return COMPILED


def stock_models() -> list[VectorModel]:
    """The default ensemble and each of its components, with default settings."""
    from perfintel.analysis.anomaly import (
        AnomalyLikelihood,
        ContextNovelty,
        Ensemble,
        LevelShift,
        SeasonalBaseline,
    )

    return [Ensemble(), SeasonalBaseline(), LevelShift(), ContextNovelty(), AnomalyLikelihood()]


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every model's loop; returns the seconds taken."""
    started = time.perf_counter()
    for model in stock_models():
        st = model.new_state(1)
        model.run(st, np.zeros(3, dtype=np.int64), np.arange(3, dtype=np.int64), np.arange(3.0))
    return time.perf_counter() - started


warm = warm_up
