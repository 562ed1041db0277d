"""Detector families for ``nab_cv``: the constants chosen by looking at NAB scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from perfintel.analysis.anomaly import (
    ContextNovelty,
    Ensemble,
    EnsembleConfig,
    LevelShift,
    SeasonalBaseline,
)
from perfintel.evaluation.nab import stream_series
from perfintel.evaluation.nab_cv import Family, Series


def _ensemble(p: Mapping[str, float]) -> Ensemble:
    cfg = EnsembleConfig(
        weights=(0.0, 1.0, p["w_novelty"]),
        alarm=p["alarm"],
        rest=int(p["rest"]),
        lik_short_alpha=p["lik_short_alpha"],
        lik_decay=p["lik_decay"],
        lik_warmup=int(p["lik_warmup"]),
        widths=(0.1, p["width_shift"], p["width_novelty"]),
    )
    return Ensemble(
        0,
        cfg,
        seasonal=SeasonalBaseline(0, slow_alpha=p["slow_alpha"], profile_alpha=p["profile_alpha"]),
        shift=LevelShift(0, short_alpha=p["shift_short"], long_alpha=p["shift_long"]),
        novelty=ContextNovelty(0, bins=int(p["novelty_bins"]), warmup=int(p["novelty_warmup"])),
    )


def _run_ensemble(p: Mapping[str, float], series: Sequence[Series]) -> list[np.ndarray]:
    return [o["score"] for o in stream_series(_ensemble(p), list(series))]


ENSEMBLE_V1 = Family(
    name="ensemble-v1",
    defaults={
        "alarm": 0.6,
        "rest": 120,
        "lik_short_alpha": 0.4,
        "lik_decay": 1 / 8000,
        "lik_warmup": 200,
        "w_novelty": 0.9,
        "width_shift": 0.1,
        "width_novelty": 0.04,
        "novelty_bins": 5,
        "novelty_warmup": 250,
        "shift_short": 0.1,
        "shift_long": 0.005,
        "slow_alpha": 0.03,
        "profile_alpha": 0.15,
    },
    space={
        "alarm": (0.5, 0.6, 0.7),
        "rest": (60, 120, 240),
        "lik_short_alpha": (0.2, 0.4, 0.7),
        "lik_decay": (1 / 3000, 1 / 8000, 1 / 20000),
        "lik_warmup": (100, 200, 400),
        "w_novelty": (0.7, 0.9, 1.0),
        "width_shift": (0.05, 0.1, 0.2),
        "width_novelty": (0.02, 0.04, 0.08),
        "novelty_bins": (4, 5, 7),
        "novelty_warmup": (150, 250, 400),
        "shift_short": (0.05, 0.1, 0.2),
        "shift_long": (0.002, 0.005, 0.01),
        "slow_alpha": (0.01, 0.03, 0.1),
        "profile_alpha": (0.05, 0.15, 0.3),
    },
    run=_run_ensemble,
    rest=120,
)

FAMILIES = {"default": ENSEMBLE_V1, ENSEMBLE_V1.name: ENSEMBLE_V1}
