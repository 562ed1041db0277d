"""The compact detector state (``compact.py``): a memory setting for many-series workers.

Packing is exact for values on a code and deterministic; dithered rounding keeps small
updates (a decaying histogram) in expectation; a compact runner's outputs stay close to
the exact detector's with the same model; states of the two kinds do not mix.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest

from perfintel.analysis.anomaly import ContextNovelty, Ensemble, OnlineRunner
from perfintel.analysis.anomaly.compact import COMPACT_FOLD, CompactCodec, compact_model, quantise
from perfintel.batch import SampleBatch
from perfintel.model import label_set
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.memory import MemoryStore
from tests.analysis.test_anomaly_kernel import KINDS, generated


def _codec() -> tuple[Ensemble, CompactCodec]:
    m = compact_model()
    return m, CompactCodec(m, m.compact_fields())


def _learnt_state(m: Ensemble, n: int = 3) -> object:
    st = m.new_state(n)
    for r in range(n):
        ts, v = generated("shift_spike", 2000, seed=r)
        m.run(st, np.full(len(v), r), ts, v)
    return st


def test_the_compact_state_is_under_a_kilobyte_and_the_default_unchanged() -> None:
    assert Ensemble().state_nbytes() == 4065  # the exact layout: the compact one leaves it as is
    assert ContextNovelty(fold=0).state_nbytes() == ContextNovelty().state_nbytes()
    m, codec = _codec()
    assert m.novelty.fold == COMPACT_FOLD
    assert codec.width < 1024
    assert OnlineRunner(m, compact=True).state_nbytes() == codec.width


def test_unpacking_and_packing_again_is_exact() -> None:
    m, codec = _codec()
    packed = codec.pack(_learnt_state(m))
    st = codec.scratch(len(packed))
    codec.unpack(packed, st)
    again = codec.pack(st)
    assert again.tobytes() == packed.tobytes()
    runner = OnlineRunner(m, capacity=1, compact=True)
    runner.packed, runner._used = packed.copy(), len(packed)
    blob = runner.get_state(1)
    runner.set_state(1, blob)
    assert runner.get_state(1) == blob and runner.packed.tobytes() == packed.tobytes()


def test_dithered_codes_follow_a_slow_decay() -> None:
    # a histogram bin decaying by 1/8000 a sample, packed after every sample: plain
    # rounding would keep it at 1000 for ever (each step is a fraction of a code)
    m, codec = _codec()
    st = m.new_state(1)
    bin0 = m.field(st, "l1.hist")
    bin0[0] = 1000.0
    bin0[1] = 7.0
    packed = codec.pack(st)
    for k in range(8000):
        st = codec.scratch(1)
        codec.unpack(packed, st)
        st.h[0, m.offsets()["l1.hist"]] *= np.float32(1 - 1 / 8000)
        st.f[0, 0] = k + 1  # the sample count seeds the dither
        packed = codec.pack(st)
    codec.unpack(packed, st)
    assert m.field(st, "l1.hist")[0] == pytest.approx(1000 * np.exp(-1), rel=0.02)
    assert m.field(st, "l1.hist")[1] == 7.0  # untouched values stay exact


def test_plain_python_quantise_is_the_compiled_one() -> None:
    py = getattr(quantise, "py_func", None)
    if py is None:
        pytest.fail("numba is a declared dependency: quantise must be compiled")
    m = compact_model()
    st = _learnt_state(m, 4)
    count = st.f[:, 0].astype(np.int64)
    for name, (bits, signed) in m.compact_fields().items():
        start, size = m.offsets()[name], m.fields()[name].size
        qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        got = [np.empty(4, np.int64), np.empty((4, size), np.int64)]
        want = [np.empty(4, np.int64), np.empty((4, size), np.int64)]
        quantise(st.h, start, size, count, qmax, signed, *got)
        py(st.h, start, size, count, qmax, signed, *want)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), name


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "huge"])
def test_a_compact_runner_stays_close_to_the_exact_detector(kind: str) -> None:
    m = compact_model()
    ts, v = generated(kind, 2000, seed=3)
    exact = m.run(m.new_state(1), np.zeros(len(v), np.int64), ts, v)
    runner = OnlineRunner(m, capacity=1, compact=True)
    got: dict[str, list[float]] = {}
    for i in range(len(v)):  # one sample a call: packed around every sample
        for k, a in runner.update_many_full(
            np.zeros(1, np.int64), ts[i : i + 1], v[i : i + 1]
        ).items():
            got.setdefault(k, []).append(float(a[0]))
    score = np.array(got["score"])
    assert np.nanmax(np.abs(score - exact["score"])) < 0.1
    assert abs(int((score >= 0.6).sum()) - int((exact["score"] >= 0.6).sum())) <= 2
    yhat, band = np.array(got["yhat"]), exact["yhat_upper"] - exact["yhat"]
    ok = np.isfinite(yhat) & np.isfinite(band) & (band > 0)
    # the expected value moves by a small share of the band (profile codes: 1/127 of a range)
    assert np.median(np.abs(yhat[ok] - exact["yhat"][ok]) / band[ok]) < 0.02
    # and the run is deterministic
    again = OnlineRunner(m, capacity=1, compact=True)
    for i in range(len(v)):
        again.update_many(np.zeros(1, np.int64), ts[i : i + 1], v[i : i + 1])
    assert again.packed[:1].tobytes() == runner.packed[:1].tobytes()


def test_states_of_the_other_kind_are_not_loaded(caplog: pytest.LogCaptureFixture) -> None:
    series = [label_set({"__name__": "m", "i": str(i)}) for i in range(3)]
    b = SampleBatch(series, np.arange(3, dtype=np.int32), np.full(3, 1_700_000_000_000), np.ones(3))
    compact = OnlineAnomalyDetection(MemoryStore(), compact=True)
    compact.process(b)
    blob = compact.dump_state()
    exact = OnlineAnomalyDetection(MemoryStore())
    with caplog.at_level("WARNING", logger="perfintel.performance.online"):
        assert exact.restore_state(blob) == 0  # refused, logged: the detector relearns
    assert "another detector configuration" in caplog.text
    # and an exact detector's states are not taken by a compact one either
    exact.process(b)
    caplog.clear()
    with caplog.at_level("WARNING", logger="perfintel.performance.online"):
        assert (
            OnlineAnomalyDetection(MemoryStore(), compact=True).restore_state(exact.dump_state())
            == 0
        )
    assert "do not fit this configuration" in caplog.text
    again = OnlineAnomalyDetection(MemoryStore(), compact=True)
    assert again.restore_state(blob) == 3
    assert again.dump_state() == blob
    # a compact checkpoint holds the packed rows: about 900 bytes a series, not 1,700
    with np.load(io.BytesIO(blob)) as z:
        assert z["states"].shape == (3, again.runner.state_nbytes())


def test_compact_outputs_do_not_depend_on_batching() -> None:
    m = compact_model()
    data = [generated(k, 600, seed=i) for i, k in enumerate(("walk", "shift_spike", "nan"))]
    ids = np.concatenate([np.full(len(v), i) for i, (_, v) in enumerate(data)])
    ts = np.concatenate([t for t, _ in data])
    vals = np.concatenate([v for _, v in data])
    perm = np.random.default_rng(4).permutation(len(ids))
    # keep each series' samples in time order within the shuffled sequence
    for i in range(len(data)):
        mine = np.flatnonzero(ids[perm] == i)
        perm[mine] = np.flatnonzero(ids == i)
    ids, ts, vals = ids[perm], ts[perm], vals[perm]
    one = OnlineRunner(m, capacity=3, compact=True)
    single = np.array(
        [
            one.update_many(ids[j : j + 1], ts[j : j + 1], vals[j : j + 1])[0]
            for j in range(len(ids))
        ]
    )
    many = OnlineRunner(m, capacity=3, compact=True)
    cuts = [0, 7, 300, 301, 900, len(ids)]
    batched = np.concatenate(
        [many.update_many(ids[a:b], ts[a:b], vals[a:b]) for a, b in itertools.pairwise(cuts)]
    )
    assert single.tobytes() == batched.tobytes()
    assert one.packed[:3].tobytes() == many.packed[:3].tobytes()
