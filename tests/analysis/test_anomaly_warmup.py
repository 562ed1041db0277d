"""The time warm-up, in the model: no score until a series' history spans an hour.

One kernel serves every front end, so the per-series detector (detect API, NAB
evaluation), the online runner and its compact state all wait the same hour; the
expected value and band are given throughout.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly import (
    AnomalyDetector,
    Detector,
    Ensemble,
    OnlineRunner,
    SeasonalBaseline,
)
from perfintel.analysis.anomaly.compact import compact_model
from perfintel.analysis.anomaly.seasonal import WARMUP_MS

T0 = 1_700_000_000_000
STEP = 15_000
N = 300  # 75 minutes at 15 s
TS = T0 + np.arange(N, dtype=np.int64) * STEP
#: a shift of 30 spreads at minute 55: past the likelihoods' 200-sample warm-up (50 minutes
#: at 15 s), before the hour
SHIFT = 220
#: and a spike of 20 spreads at minute 70
SPIKE = 280
V = 100.0 + np.random.default_rng(3).normal(0, 1.0, N)
V[SHIFT:] += 30.0
V[SPIKE] += 20.0
WARMING = TS - T0 < WARMUP_MS


def test_every_front_end_scores_nothing_in_the_first_hour_and_alarms_after() -> None:
    exact = AnomalyDetector().run_batch_full(TS, V)
    runner = OnlineRunner(compact_model(), capacity=4, compact=True)
    compact = runner.update_many_full(np.full(N, 2, np.int64), TS, V)
    for out in (exact, compact):
        assert not out["score"][WARMING].any() and not out["fired"][WARMING].any()
        assert not out["anomaly_score"][WARMING].any() and not out["alert"][WARMING].any()
        assert np.isfinite(out["yhat"]).all() and np.isfinite(out["yhat_upper"]).all()
        assert out["yhat"][SHIFT + 10] > 110  # the band follows the shift while warming
        # the shift still stands out once the hour is over: the alarm comes then; and
        # the band, learnt in the meantime, flags the spike
        assert out["score"][~WARMING].max() >= Ensemble().config.alarm
        assert out["anomaly_score"][SPIKE] > 3.0
    seasonal = Detector(SeasonalBaseline()).run_batch_full(TS, V)
    assert not seasonal["score"][WARMING].any() and not seasonal["anomaly_score"][WARMING].any()
    assert seasonal["anomaly_score"][SPIKE] > 3.0


def test_the_warm_up_is_the_seasonal_baselines_parameter() -> None:
    # without it the shift alarms at minute 55, as it did before the warm-up existed
    model = Ensemble(seasonal=SeasonalBaseline(warmup_ms=0))
    out = Detector(model).run_batch_full(TS, V)
    assert out["fired"][WARMING].any() and out["anomaly_score"][WARMING].max() > 1.0
    # at NAB's 5 minutes the hour is 12 samples: the 10th and 11th wait, the 12th scores
    five = T0 + np.arange(40, dtype=np.int64) * 300_000
    noisy = 10.0 + np.random.default_rng(4).normal(0, 1.0, 40)
    a = AnomalyDetector().run_batch_full(five, noisy)["anomaly_score"]
    assert not a[:12].any() and a[12:].all()
