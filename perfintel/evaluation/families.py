"""Detector families for ``nab_cv``: the constants chosen by looking at NAB scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from perfintel.analysis.anomaly import ContextNovelty, Ensemble, EnsembleConfig
from perfintel.evaluation.nab import stream_series
from perfintel.evaluation.nab_cv import Family, Series


def _ensemble(p: Mapping[str, float]) -> Ensemble:
    cfg = EnsembleConfig(
        alarm=p["alarm"], rest=int(p["rest"]), lik_short_alpha=p["lik_short_alpha"]
    )
    novelty = ContextNovelty(0, bins=int(p["novelty_bins"]), grids=int(p["novelty_grids"]))
    return Ensemble(0, cfg, novelty=novelty)


def _run_ensemble(p: Mapping[str, float], series: Sequence[Series]) -> list[np.ndarray]:
    return [o["score"] for o in stream_series(_ensemble(p), list(series))]


#: The ensemble's constants chosen by looking at NAB scores, with their candidates.
ENSEMBLE = Family(
    name="ensemble",
    defaults={
        "alarm": EnsembleConfig.alarm,
        "rest": EnsembleConfig.rest,
        "lik_short_alpha": EnsembleConfig.lik_short_alpha,
        "novelty_bins": ContextNovelty.DEFAULT_BINS,
        "novelty_grids": ContextNovelty.DEFAULT_GRIDS,
    },
    space={
        "alarm": (0.5, 0.6, 0.7),
        "rest": (60, 120, 240),
        "lik_short_alpha": (0.2, 0.4),
        "novelty_bins": (5, 6, 7),
        "novelty_grids": (1, 3),
    },
    run=_run_ensemble,
    rest=120,
)

FAMILIES = {"default": ENSEMBLE, ENSEMBLE.name: ENSEMBLE}
