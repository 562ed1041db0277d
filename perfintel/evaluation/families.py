"""Detector families for ``nab_cv``: the constants chosen by looking at NAB scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from perfintel.analysis.anomaly import Ensemble, EnsembleConfig
from perfintel.evaluation.nab import stream_series
from perfintel.evaluation.nab_cv import Family, Series


def _ensemble(p: Mapping[str, float]) -> Ensemble:
    cfg = EnsembleConfig(alarm=p["alarm"], rest=int(p["rest"]))
    return Ensemble(0, cfg)


def _run_ensemble(p: Mapping[str, float], series: Sequence[Series]) -> list[np.ndarray]:
    return [o["score"] for o in stream_series(_ensemble(p), list(series))]


#: The ensemble's constants chosen by looking at NAB scores, with their candidates.
ENSEMBLE = Family(
    name="ensemble",
    defaults={"alarm": EnsembleConfig.alarm, "rest": EnsembleConfig.rest},
    space={"alarm": (0.5, 0.6, 0.7), "rest": (60, 120, 240)},
    run=_run_ensemble,
    rest=120,
)

FAMILIES = {"default": ENSEMBLE, ENSEMBLE.name: ENSEMBLE}
