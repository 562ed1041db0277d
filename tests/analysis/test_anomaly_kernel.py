"""One implementation: every front end runs the same compiled loop, bit for bit.

``Detector`` (one series along time), ``OnlineRunner`` (many series per batch,
several samples of a series in one batch), the detect API's two batching modes
and the NAB evaluation must give *identical* outputs and states (not merely
close: even a sign of zero would show), and the same functions run as plain
Python (``NUMBA_DISABLE_JIT=1``) must give the compiled numbers. NAB files are
read from ``PERFINTEL_NAB_DATA`` or ``shared/data/nab/data`` beside the
repository (a failure when absent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from perfintel.analysis.anomaly import (
    AnomalyDetector,
    ContextNovelty,
    Detector,
    Ensemble,
    EnsembleConfig,
    OnlineRunner,
    kernel,
)
from perfintel.analysis.anomaly.base import StateVersionError, model_from_state
from perfintel.errors import BadInputError
from perfintel.evaluation.nab import read_series

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
        assert bit_equal(a[k], b[k]), k


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
    elif kind == "signed_zeros":
        v = rng.choice([0.0, -0.0, 1.0, -1.0, 0.5], n)
    elif kind == "flat_steps":
        # a constant 0 (spread at the resolution floor), counts, stuck at 3.25, then cents
        v = np.zeros(n)
        v[n // 3 :] = rng.poisson(0.7, n - n // 3)
        v[n * 3 // 5 :] = 3.25
        v[n * 4 // 5 :] = np.round(rng.normal(3.25, 0.05, n - n * 4 // 5), 2)
    return ts, v


KINDS = ["shift_spike", "walk", "nan", "huge", "time", "spiky", "signed_zeros", "flat_steps"]


def interleaved(
    model: Ensemble, data: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[list[dict[str, np.ndarray]], OnlineRunner]:
    """Feed every series through one runner in random-sized batches, series interleaved
    at random (each series' samples in time order, often several in one batch)."""
    rng = np.random.default_rng(seed)
    lengths = [len(v) for _, v in data]
    bounds = np.cumsum([0, *lengths])
    ids = np.repeat(3 * np.arange(len(data)), lengths)  # sparse ids
    t_all = np.concatenate([t for t, _ in data])
    v_all = np.concatenate([v for _, v in data])
    # the k-th occurrence of a series in a random label sequence takes its k-th sample
    labels = rng.permutation(ids)
    nxt = {3 * i: int(bounds[i]) for i in range(len(data))}
    flat = np.empty(len(ids), dtype=np.int64)
    for j, s in enumerate(labels):
        flat[j] = nxt[int(s)]
        nxt[int(s)] += 1
    runner = OnlineRunner(model, capacity=2)  # forces growth
    got: dict[str, np.ndarray] = {}
    start = 0
    while start < len(flat):
        idx = flat[start : start + int(rng.integers(1, 400))]
        for k, a in runner.update_many_full(ids[idx], t_all[idx], v_all[idx]).items():
            got.setdefault(k, np.zeros(len(ids)))[idx] = a
        start += len(idx)
    outs = [{k: a[bounds[i] : bounds[i + 1]] for k, a in got.items()} for i in range(len(data))]
    return outs, runner


@pytest.mark.parametrize("kind", KINDS)
def test_runner_equals_detector_on_generated_series(kind: str) -> None:
    seed = zlib.crc32(kind.encode()) % 1000  # hash() varies per process
    data = [generated(kind, seed=seed + j) for j in range(3)]
    want = []
    for t, v in data:
        det = AnomalyDetector()
        want.append((det.run_batch_full(t, v), det.get_state()))
    got, runner = interleaved(Ensemble(), data, seed)
    for i, ((w, state), g) in enumerate(zip(want, got, strict=True)):
        assert_same(w, g)
        assert runner.get_state(3 * i) == state


def test_update_equals_batch_for_every_output() -> None:
    ts, v = generated("shift_spike", 900, seed=9)
    v[450] = np.nan
    one = AnomalyDetector()
    rows = [one._step(int(t), float(x)) for t, x in zip(ts, v, strict=True)]
    want = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    batch = AnomalyDetector()
    assert_same(want, batch.run_batch_full(ts, v))
    assert one.get_state() == batch.get_state()


@pytest.mark.parametrize("c", [0.0, -0.0, 3.25, -1e9, 1e100])
def test_constants_score_zero(c: float) -> None:
    ts, _ = generated("plain", 1400)
    det = AnomalyDetector()
    assert np.all(det.score_batch(ts, np.full(1400, c)) == 0.0)


def test_other_configurations_run_the_same_code() -> None:
    ts, v = generated("shift_spike", 1200, seed=4)
    configs = [
        lambda: Ensemble(3, EnsembleConfig(weights=(0.7, 1.0, 0.9), deseasonalise_shift=False)),
        lambda: Ensemble(5, novelty=ContextNovelty(5, bins=3, depth=4, grids=2)),
        lambda: Ensemble(1, novelty=ContextNovelty(1, depth=1)),
        lambda: Ensemble(2, EnsembleConfig(rest=5, alarm=0.3, lik_warmup=20, lik_bins=13)),
    ]
    for make in configs:
        det = Detector(make())
        want = det.run_batch_full(ts, v)
        got, runner = interleaved(make(), [(ts, v)], 1)
        assert_same(want, got[0])
        assert runner.get_state(0) == det.get_state()


def _nab_dir() -> Path:
    for cand in (os.environ.get("PERFINTEL_NAB_DATA"), ROOT.parent / "shared/data/nab/data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    # ../shared is beside every checkout here and in CI: its absence is a failure
    pytest.fail("NAB corpus not found beside the repository (or set PERFINTEL_NAB_DATA)")


def test_runner_equals_detector_on_nab_files() -> None:
    root = _nab_dir()
    data = [read_series(root / rel)[1:] for rel in NAB_FILES]
    want = [AnomalyDetector().run_batch_full(t, v) for t, v in data]
    got, _ = interleaved(Ensemble(), data, 7)
    for w, g in zip(want, got, strict=True):
        assert_same(w, g)
        assert w["score"].max() > 0.5  # not a vacuous comparison


_PURE = """
import json, sys
import numpy as np
from perfintel.analysis.anomaly import AnomalyDetector, jit
ts = np.asarray(json.loads(sys.argv[1]), dtype=np.int64)
v = np.asarray(json.loads(sys.argv[2]))
det = AnomalyDetector()
out = det.run_batch_full(ts, v)
print(json.dumps({"compiled": jit.COMPILED, "state": det.get_state().hex(),
                  "out": {k: a.tobytes().hex() for k, a in out.items()}}))
"""


@pytest.mark.parametrize("kind", ["shift_spike", "flat_steps"])
def test_pure_python_path_is_the_same_code(kind: str) -> None:
    ts, v = generated(kind, 700, seed=12)
    v[100] = np.nan
    args = [json.dumps(ts.tolist()), json.dumps([None if x != x else x for x in v.tolist()])]
    args[1] = args[1].replace("null", "NaN")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _PURE, *args], env=env, capture_output=True, text=True, check=True
    )
    pure = json.loads(res.stdout)
    assert pure["compiled"] is False
    det = AnomalyDetector()
    want = det.run_batch_full(ts, v)
    for k, a in want.items():
        assert bytes.fromhex(pure["out"][k]) == a.tobytes(), k
    assert bytes.fromhex(pure["state"]) == det.get_state()


def test_state_round_trips_between_front_ends() -> None:
    ts, v = generated("shift_spike", 1400, seed=11)
    v[700] = np.nan
    ref = AnomalyDetector()
    full = ref.run_batch_full(ts, v)
    for k in (1, 333, 700, 1000):
        det = AnomalyDetector()
        head = det.run_batch_full(ts[:k], v[:k])
        runner = OnlineRunner(capacity=4)
        runner.set_state(2, det.get_state())
        mid = runner.update_many_full(np.full(100, 2), ts[k : k + 100], v[k : k + 100])
        again = Detector.from_state(runner.get_state(2))
        tail = again.run_batch_full(ts[k + 100 :], v[k + 100 :])
        for name in ("score", "anomaly_score", "yhat", "yhat_lower", "yhat_upper"):
            joined = np.concatenate([head[name], mid[name], tail[name]])
            assert bit_equal(joined, full[name]), (k, name)
        assert again.get_state() == ref.get_state()


def test_state_of_the_previous_version_is_refused_cleanly() -> None:
    old = b"PIA1\x08ensemble" + bytes(8) + bytes(2703 - 21)
    with pytest.raises(StateVersionError):
        Detector.from_state(old)
    with pytest.raises(StateVersionError):
        OnlineRunner().set_state(0, old)
    with pytest.raises(BadInputError):
        model_from_state(b"PIA2\x03zzz" + bytes(8))
    blob = AnomalyDetector().get_state()
    with pytest.raises(BadInputError):
        Detector.from_state(blob[:-1])
    with pytest.raises(BadInputError):  # another configuration's layout
        Detector.from_state(blob, Ensemble(novelty=ContextNovelty(bins=7)))
    with pytest.raises(ValueError):
        ContextNovelty(bins=9, depth=4)  # a table beyond MAX_TABLE_BITS


def test_empty_and_all_nan_batches() -> None:
    det = AnomalyDetector()
    blob = det.get_state()
    empty = det.run_batch_full(np.zeros(0, dtype=np.int64), np.zeros(0))
    assert all(len(a) == 0 for a in empty.values())
    out = det.run_batch_full(T0 + np.arange(5), np.full(5, np.nan))
    assert np.all(out["score"] == 0) and np.all(np.isnan(out["yhat"]))
    assert np.all(out["fired"] == 0) and np.all(out["model"] == 0)
    assert det.get_state() == blob


def test_warm_up_compiles_every_loop() -> None:
    assert kernel.compiled()
    assert kernel.warm_up() >= 0.0
    assert kernel.warm is kernel.warm_up


def test_jit_falls_back_when_no_cache_dir_is_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core import caching

    from perfintel.analysis.anomaly import jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def add(a: float, b: float) -> float:
        return a + b

    compiled = jit.njit(add)
    assert compiled(1.0, 2.0) == 3.0
    assert isinstance(compiled._cache, caching.NullCache)  # type: ignore[attr-defined]
