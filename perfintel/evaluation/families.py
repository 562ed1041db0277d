"""Detector families for ``nab_cv``: the constants chosen by looking at NAB scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from perfintel.analysis.anomaly import ContextNovelty, Ensemble, EnsembleConfig, OnlineRunner
from perfintel.analysis.anomaly.compact import COMPACT_FOLD
from perfintel.evaluation.nab import stream_series
from perfintel.evaluation.nab_cv import Family, Series


def _ensemble(p: Mapping[str, float]) -> Ensemble:
    cfg = EnsembleConfig(
        alarm=p["alarm"], rest=int(p["rest"]), lik_short_alpha=p["lik_short_alpha"]
    )
    novelty = ContextNovelty(
        0,
        bins=int(p["novelty_bins"]),
        grids=int(p["novelty_grids"]),
        fold=int(p.get("novelty_fold", 0)),
    )
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


def _run_compact(p: Mapping[str, float], series: Sequence[Series]) -> list[np.ndarray]:
    """The worker's compact state (``OnlineRunner(compact=True)``, the novelty table folded):
    every file's series in one runner, one sample of each per call, so every state is
    packed and unpacked around every sample, as a worker scoring one sample per series
    and batch does."""
    runner = OnlineRunner(_ensemble(p), capacity=len(series), compact=True)
    n = [len(v) for _, v in series]
    longest = max(n, default=0)
    ts = np.zeros((len(series), longest), np.int64)
    xs = np.zeros((len(series), longest))
    for i, (t, v) in enumerate(series):
        ts[i, : n[i]] = t
        xs[i, : n[i]] = v
    out = np.zeros((len(series), longest))
    by_len = np.argsort(n, kind="stable")[::-1]
    active = len(series)
    lengths = np.array(n)
    for k in range(longest):
        while active and lengths[by_len[active - 1]] <= k:
            active -= 1
        ids = np.sort(by_len[:active])
        out[ids, k] = runner.update_many(ids, ts[ids, k], xs[ids, k])
    return [out[i, : n[i]].copy() for i in range(len(series))]


#: The ensemble with the compact state a bus worker keeps (``anomaly.compact_state``):
#: the same constants searched; the novelty fold is a memory setting (the state under
#: 1 KiB), fixed, not searched.
ENSEMBLE_COMPACT = Family(
    name="ensemble-compact",
    defaults={**ENSEMBLE.defaults, "novelty_fold": COMPACT_FOLD},
    space=ENSEMBLE.space,
    run=_run_compact,
    rest=120,
)

FAMILIES = {"default": ENSEMBLE, ENSEMBLE.name: ENSEMBLE, ENSEMBLE_COMPACT.name: ENSEMBLE_COMPACT}
