"""The compiled single-series kernel reproduces the vector path bit for bit.

Every output of ``Detector.run_batch_full`` and the state bytes must be
*identical* (not merely close) between ``engine="kernel"`` and
``engine="vector"``, on generated series with the conformance suite's edge
cases, on NAB files, and across restarts from either path's saved state.
NAB files are read from ``PERFINTEL_NAB_DATA`` or ``shared/data/nab/data``
beside the repository (a failure when absent); ``PERFINTEL_KERNEL_ALL_NAB=1``
checks every file instead of three.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from perfintel.analysis.anomaly import (
    AnomalyDetector,
    AnomalyLikelihood,
    ContextNovelty,
    Detector,
    Ensemble,
    EnsembleConfig,
    LevelShift,
    OnlineRunner,
    SeasonalBaseline,
    kernel,
)
from perfintel.errors import BadInputError
from perfintel.evaluation.nab import read_series, stream_lockstep

ROOT = Path(__file__).resolve().parents[2]
MIN = 60_000
T0 = 1_400_000_000_000
NAB_FILES = (
    "realAdExchange/exchange-2_cpc_results.csv",  # hourly, 68 days (weekly model), repeated ts
    "realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",  # 1e8-scale values, repeated ts
    "realTraffic/TravelTime_387.csv",  # 10-minute sampling, 69 days
)


def bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes: -0.0 differs from 0.0 (``np.array_equal`` would not tell)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert bit_equal(a[k], b[k]), (k, _first_diff(a[k], b[k]))


def _first_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float, float]:
    bad = np.flatnonzero(a.view(np.int64) != b.view(np.int64))
    i = int(bad[0])
    return i, float(a[i]), float(b[i])


def both(ts: np.ndarray, v: np.ndarray, model: Ensemble | None = None) -> tuple[Detector, Detector]:
    """(vector-path detector, kernel-path detector) after the same batch, outputs compared."""
    vec = Detector(model or Ensemble())
    ker = Detector(model or Ensemble())
    assert_same(vec.run_batch_full(ts, v, engine="vector"), ker.run_batch_full(ts, v, "kernel"))
    assert vec.get_state() == ker.get_state()
    return vec, ker


def generated(kind: str, n: int = 1500, step: int = 5 * MIN, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * step
    i = np.arange(n)
    v = 50 + 10 * np.sin(2 * np.pi * i * step / 86_400_000) + rng.normal(0, 1, n)
    if kind == "shift_spike":
        v[n // 2 :] += 8.0
        v[int(n * 0.8)] = 140.0
    elif kind == "walk":
        v = np.cumsum(rng.normal(0, 1, n))
    elif kind == "nan":
        v[rng.random(n) < 0.05] = np.nan
        v[300:340] = np.nan
    elif kind == "huge":
        v[350], v[360], v[370], v[380] = 1e300, -np.inf, np.inf, -1e100
        v[900:] *= 1e90
    elif kind == "time":
        ts = ts.copy()
        ts[300:] += 9 * 24 * 3_600_000  # a nine-day gap
        ts[500:510] = ts[500]  # repeated timestamps
        ts[520] = ts[100]  # a step back in time
        ts[700:] -= 40 * 24 * 3_600_000  # the clock jumps back 40 days
    elif kind == "spiky":
        v = rng.exponential(1.0, n) ** 3  # heavy tail: many likelihood bins, many alarms
    elif kind == "integers":
        v = rng.integers(0, 3, n).astype(float)
    elif kind == "signed_zeros":  # np.minimum/np.maximum/np.clip pick a sign of zero
        v = rng.choice([0.0, -0.0, 1.0, -1.0, 0.5], n)
        v[:300] = np.where(i[:300] % 2 == 0, 0.0, -0.0)  # the novelty range: min(+0, -0)
    return ts, v


@pytest.mark.parametrize(
    "kind", ["shift_spike", "walk", "nan", "huge", "time", "spiky", "integers", "signed_zeros"]
)
def test_kernel_equals_vector_on_generated_series(kind: str) -> None:
    both(*generated(kind, seed=zlib.crc32(kind.encode()) % 1000))  # hash() varies per process


@pytest.mark.parametrize("c", [0.0, -0.0, 3.25, -1e9, 1e100])
def test_kernel_equals_vector_on_constants(c: float) -> None:
    ts, _ = generated("plain", 700)
    vec, _ = both(ts, np.full(700, c))
    assert np.all(vec.score_batch(ts + 700 * 5 * MIN, np.full(700, c)) == 0.0)


def test_kernel_equals_vector_when_every_model_wins() -> None:
    # hourly samples over 150 days: a daily pattern, then a weekly one
    n = 150 * 24
    ts = T0 + np.arange(n, dtype=np.int64) * 60 * MIN
    hour = (ts // 3_600_000) % 168
    rng = np.random.default_rng(3)
    weekly = rng.normal(0, 10, 168)  # a profile per hour of the week
    v = 100 + np.where(ts < T0 + 30 * 86_400_000, 10 * np.sin(2 * np.pi * hour / 24), weekly[hour])
    v = v + rng.normal(0, 1, n)
    v[3000:3005] += 60
    vec = Detector(Ensemble())
    want = vec.run_batch_full(ts, v, engine="vector")
    ker = Detector(Ensemble())
    assert_same(want, ker.run_batch_full(ts, v, engine="kernel"))
    assert vec.get_state() == ker.get_state()
    assert set(np.unique(want["model"])) == {0.0, 1.0, 2.0}


def test_kernel_equals_vector_under_other_configurations() -> None:
    ts, v = generated("shift_spike", 1200, seed=4)
    configs = [
        Ensemble(3, EnsembleConfig(weights=(0.7, 1.0, 0.9), deseasonalise_shift=False)),
        Ensemble(5, novelty=ContextNovelty(5, bins=7, depth=4, table_bits=10)),  # hashed table
        Ensemble(1, novelty=ContextNovelty(1, depth=1)),
        Ensemble(2, EnsembleConfig(rest=5, alarm=0.3, lik_warmup=20, widths=(0.2, 0.05, 0.3))),
    ]
    assert not configs[1].novelty._direct
    for model in configs:
        both(ts, v, model=model)


@pytest.mark.parametrize("bins", [5, 8, 13, 48, 100, 128])
def test_likelihood_histogram_sum_matches_numpy(bins: int) -> None:
    lp = kernel.loops()
    assert lp is not None
    rng = np.random.default_rng(bins)
    for _ in range(200):
        row = (rng.exponential(1, bins) * 10 ** rng.uniform(-4, 4, bins)).astype(np.float32)
        b = int(rng.integers(0, bins))
        hist = row[None, :]
        want = np.where(np.arange(bins) >= b, hist, np.float32(0.0)).sum(axis=1)[0]
        assert lp._mass_at_or_above(hist, 0, b) == want


def test_kernel_with_other_likelihood_bins() -> None:
    ts, v = generated("spiky", 900, seed=8)
    model = Ensemble()
    model.liks[1] = AnomalyLikelihood(0, short_alpha=0.4, decay=1 / 500, width=0.3, bins=13)
    both(ts, v, model=model)


def _nab_dir() -> Path | None:
    for cand in (os.environ.get("PERFINTEL_NAB_DATA"), ROOT.parent / "shared/data/nab/data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def _nab_files() -> list[str]:
    root = _nab_dir()
    if root is None:
        return list(NAB_FILES)
    if os.environ.get("PERFINTEL_KERNEL_ALL_NAB") == "1":
        return sorted(str(p.relative_to(root)) for p in root.glob("*/*.csv"))
    return list(NAB_FILES)


def test_kernel_equals_vector_on_nab_files() -> None:
    root = _nab_dir()
    if root is None:  # ../shared is beside every checkout here and in CI: its absence is a failure
        pytest.fail("NAB corpus not found beside the repository (or set PERFINTEL_NAB_DATA)")
    series = [read_series(root / rel)[1:] for rel in _nab_files()]
    keep = tuple(k for k in kernel.OUTPUTS if k != "score")
    names = {"yhat_lower": "lower", "yhat_upper": "upper"}
    vec = stream_lockstep(Ensemble(), series, keep=tuple(names.get(k, k) for k in keep))
    for (t, v), want in zip(series, vec, strict=True):
        det = Detector(Ensemble())
        got = det.run_batch_full(t, v, engine="kernel")
        for k in kernel.OUTPUTS:
            assert bit_equal(got[k], want[names.get(k, k)]), k


def test_state_round_trips_between_paths() -> None:
    ts, v = generated("shift_spike", 1400, seed=11)
    v[700] = np.nan
    ref = AnomalyDetector()
    full = ref.run_batch_full(ts, v, engine="vector")
    end_state = ref.get_state()
    for first, second in (("vector", "kernel"), ("kernel", "vector"), ("kernel", "kernel")):
        for k in (1, 333, 700, 1000):
            det = AnomalyDetector()
            head = det.run_batch_full(ts[:k], v[:k], engine=first)
            blob = det.get_state()
            again = Detector.from_state(blob)
            tail = again.run_batch_full(ts[k:], v[k:], engine=second)
            for name in full:
                joined = np.concatenate([head[name], tail[name]])
                assert bit_equal(joined, full[name]), (first, second, k)
            assert again.get_state() == end_state


def test_state_interchanges_with_online_runner() -> None:
    ts, v = generated("walk", 800, seed=2)
    runner = OnlineRunner(capacity=4)
    runner.update_many(np.full(400, 3), ts[:400], v[:400])
    det = Detector.from_state(runner.get_state(3))
    got = det.run_batch_full(ts[400:], v[400:], engine="kernel")
    want = runner.update_many_full(np.full(400, 3), ts[400:], v[400:])
    for k, a in want.items():
        assert bit_equal(got[k], a), k
    assert det.get_state() == runner.get_state(3)
    # and back: a kernel-advanced state continues in the runner
    runner.set_state(1, det.get_state())
    more_t, more_v = ts[-1] + (1 + np.arange(100)) * 5 * MIN, v[:100]
    assert np.array_equal(
        runner.update_many(np.full(100, 1), more_t, more_v), det.score_batch(more_t, more_v)
    )


def test_kernel_runs_on_any_row_of_a_state_bank() -> None:
    model = Ensemble()
    ts, v = generated("shift_spike", 600, seed=6)
    st = model.new_state(3)
    got = kernel.run(model, st, 2, ts, v)
    det = Detector(Ensemble())
    assert_same(got, det.run_batch_full(ts, v, engine="vector"))
    assert model.dump(st, 2) == det.get_state()
    assert model.dump(st, 0) == model.dump(model.new_state(1), 0)


def test_results_batch_equals_update_result() -> None:
    ts, v = generated("shift_spike", 900, seed=9)
    v[450] = np.nan
    one = AnomalyDetector()
    want = [one.update_result(int(t), float(x)) for t, x in zip(ts, v, strict=True)]
    got = AnomalyDetector().results_batch(ts, v)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert repr(g) == repr(w)
    assert any(r.is_anomaly and r.explanation for r in got)


def test_score_batch_dispatches_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    ts, v = generated("shift_spike", 400)
    assert kernel.supports(Ensemble()) and kernel.enabled()
    calls: list[int] = []
    real = kernel.run

    def spy(*args: object, **kw: object) -> dict[str, np.ndarray]:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(kernel, "run", spy)
    s = AnomalyDetector().score_batch(ts, v)
    assert calls == [1]
    kernel.set_enabled(False)
    try:
        assert not kernel.enabled()
        assert np.array_equal(AnomalyDetector().score_batch(ts, v), s)
        assert calls == [1]
    finally:
        kernel.set_enabled(True)

    class Custom(LevelShift):
        pass

    odd = Ensemble(shift=Custom())
    assert not kernel.supports(odd) and not kernel.supports(SeasonalBaseline())
    assert np.array_equal(Detector(odd).score_batch(ts, v), s)  # the vector path, same model
    with pytest.raises(BadInputError):
        Detector(odd).run_batch_full(ts, v, engine="kernel")
    with pytest.raises(ValueError):
        Detector(Ensemble()).run_batch_full(ts, v, engine="gpu")


def test_empty_and_all_nan_batches() -> None:
    det = AnomalyDetector()
    blob = det.get_state()
    empty = det.run_batch_full(np.zeros(0, dtype=np.int64), np.zeros(0), engine="kernel")
    assert all(len(a) == 0 for a in empty.values())
    out = det.run_batch_full(T0 + np.arange(5), np.full(5, np.nan), engine="kernel")
    assert_same(out, det.run_batch_full(T0 + np.arange(5), np.full(5, np.nan), engine="vector"))
    assert_same(empty, det.run_batch_full(T0 + np.arange(0), np.zeros(0), engine="vector"))
    assert np.all(out["score"] == 0) and np.all(np.isnan(out["yhat"]))
    assert np.all(out["fired"] == 0) and np.all(out["model"] == 0)
    assert det.get_state() == blob


def test_jit_falls_back_when_no_cache_dir_is_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core import caching

    from perfintel.analysis.anomaly import jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def add(a: float, b: float) -> float:
        return a + b

    compiled = jit.njit(add)
    assert compiled(1.0, 2.0) == 3.0
    assert isinstance(compiled._cache, caching.NullCache)  # type: ignore[attr-defined]
