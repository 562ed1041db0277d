"""The conformance suite: every anomaly model passes the same checks.

Parametrised over each component and the ensemble (river's ``check_estimator``
idea). Series are short but longer than every warm-up, so scores are non-zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from perfintel.analysis.anomaly import (
    AnomalyLikelihood,
    ContextNovelty,
    Detector,
    Ensemble,
    LevelShift,
    OnlineRunner,
    SeasonalBaseline,
    VectorModel,
)
from perfintel.analysis.anomaly.base import model_from_state
from perfintel.errors import BadInputError

FACTORIES: dict[str, Callable[[int], VectorModel]] = {
    "seasonal": lambda seed: SeasonalBaseline(seed),
    "shift": lambda seed: LevelShift(seed),
    "novelty": lambda seed: ContextNovelty(seed),
    "likelihood": lambda seed: AnomalyLikelihood(seed),
    "ensemble": lambda seed: Ensemble(seed),
}
N = 700
STEP_MS = 300_000


def series(n: int = N, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_400_000_000_000 + np.arange(n, dtype=np.int64) * STEP_MS
    v = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 1, n)
    v[n // 2 :] += 8.0  # a level shift
    v[int(n * 0.8)] = 140.0  # a spike
    return ts, v


@pytest.fixture(params=sorted(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Callable[[int], VectorModel]:
    return FACTORIES[request.param]


def run(
    factory: Callable[[int], VectorModel], ts: np.ndarray, v: np.ndarray, seed: int = 0
) -> np.ndarray:
    return Detector(factory(seed)).score_batch(ts, v)


def test_scores_in_unit_interval_and_not_all_zero(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    s = run(factory, ts, v)
    assert s.shape == v.shape
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0
    assert s.max() > 0.0  # the shift and the spike must register somewhere


def test_causal_prefix_scores_equal(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    full = run(factory, ts, v)
    k = N // 2 + 40
    assert np.array_equal(run(factory, ts[:k], v[:k]), full[:k])
    # changing the future never changes the past
    v2 = v.copy()
    v2[k:] = -v2[k:] * 7
    assert np.array_equal(run(factory, ts, v2)[:k], full[:k])


def test_update_equals_score_batch(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    det = Detector(factory(0))
    one = np.array([det.update(int(t), float(x)) for t, x in zip(ts, v, strict=True)])
    assert np.array_equal(one, run(factory, ts, v))


def test_nan_scores_zero_and_leaves_state_untouched(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    base = run(factory, ts, v)
    k = 400
    ts2 = np.insert(ts, k, ts[k - 1] + 1)
    v2 = np.insert(v, k, np.nan)
    s2 = run(factory, ts2, v2)
    assert s2[k] == 0.0
    assert np.array_equal(np.delete(s2, k), base)


def test_gaps_and_time_going_back(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    ts = ts.copy()
    ts[300:] += 9 * 24 * 3_600_000  # a nine-day gap
    ts[500:510] = ts[500]  # repeated timestamps
    ts[520] = ts[100]  # a step back in time
    s = run(factory, ts, v)
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0


def test_constant_series_raises_no_alarm(factory: Callable[[int], VectorModel]) -> None:
    ts, _ = series()
    # the likelihood's input is itself a score: a constant one sits mid-distribution
    exact_zero = factory(0).name != "likelihood"
    for c in (0.0, 3.25, -1e9):
        s = run(factory, ts, np.full(N, c))
        assert np.all(np.isfinite(s)) and s.max() < 0.2, (c, s.max())
        if exact_zero:
            assert np.all(s == 0.0), (c, s.max())


def test_huge_values_do_not_poison_state(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    v = v.copy()
    v[350] = 1e300
    v[360] = -np.inf
    v[370] = np.inf
    det = Detector(factory(0))
    s = det.score_batch(ts, v)
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0
    # the detector keeps working: a fresh stretch of ordinary data scores finitely
    more = det.score_batch(ts[-1] + STEP_MS * (1 + np.arange(200)), series(200, seed=5)[1])
    assert np.all(np.isfinite(more)) and more.max() <= 1.0


def test_restart_from_state_gives_identical_scores(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    full = run(factory, ts, v, seed=3)
    k = 420
    det = Detector(factory(3))
    det.score_batch(ts[:k], v[:k])
    blob = det.get_state()
    restored = Detector.from_state(blob)  # model rebuilt from the registry (name + seed)
    assert np.array_equal(restored.score_batch(ts[k:], v[k:]), full[k:])
    again = Detector.from_state(blob, factory(3))
    assert again.get_state() == blob


def test_state_rejects_foreign_bytes(factory: Callable[[int], VectorModel]) -> None:
    blob = Detector(factory(0)).get_state()
    with pytest.raises(BadInputError):
        Detector.from_state(blob[:-1], factory(0))
    with pytest.raises(BadInputError):
        Detector.from_state(b"not a state")
    with pytest.raises(BadInputError):
        model_from_state(b"PIA1\x03zzz" + bytes(8))


def test_deterministic_under_seed(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    a, b = Detector(factory(7)), Detector(factory(7))
    assert np.array_equal(a.score_batch(ts, v), b.score_batch(ts, v))
    assert a.get_state() == b.get_state()


def test_state_is_small(factory: Callable[[int], VectorModel]) -> None:
    ts, v = series()
    det = Detector(factory(0))
    det.score_batch(ts, v)
    assert len(det.get_state()) <= 4096


def test_online_runner_matches_per_series_detectors(factory: Callable[[int], VectorModel]) -> None:
    k = 5
    data = [series(300, seed=s) for s in range(k)]
    expected = [run(factory, t, v) for t, v in data]
    runner = OnlineRunner(factory(0), capacity=2)  # forces growth
    got = [np.zeros(300) for _ in range(k)]
    # batches of 50 samples per series, series interleaved, several samples per series per batch
    for start in range(0, 300, 50):
        ids = np.repeat(np.arange(k), 50)
        pos = np.tile(np.arange(start, start + 50), k)
        perm = np.random.default_rng(start).permutation(len(ids))
        # keep each series' samples in time order inside the batch
        perm = perm[np.lexsort((pos[perm], ids[perm]))]
        order = np.argsort(perm, kind="stable")
        ids_b, pos_b = ids[order], pos[order]
        ts_b = np.array([data[i][0][p] for i, p in zip(ids_b, pos_b, strict=True)])
        v_b = np.array([data[i][1][p] for i, p in zip(ids_b, pos_b, strict=True)])
        s = runner.update_many(ids_b * 3, ts_b, v_b)  # sparse ids
        for i, p, sc in zip(ids_b, pos_b, s, strict=True):
            got[i][p] = sc
    for e, g in zip(expected, got, strict=True):
        assert np.array_equal(e, g)
