"""The online detector identifies series by a stable key: a worker holds no Python object per
series (memory bounded per series), the key index agrees with a dict, and state files of
every format restore."""

from __future__ import annotations

import gc
import io
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.series_index import ABSENT, SeriesIndex, series_keys
from perfintel.storage.memory import MemoryStore
from perfintel.telemetry import Registry

T0 = 1_790_000_000_000
STEP = 60_000


class Discard:
    def append(self, batch: SampleBatch) -> int:
        return len(batch)


def _rounds(
    n_series: int, rounds: int, per_batch: int, seed: int, name: str = "req"
) -> list[SampleBatch]:
    """Every series one sample per round, ``per_batch`` series per batch, labels built
    fresh for every batch (as decoded from the bus)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(rounds):
        vals = 100 + 10 * np.sin(np.arange(n_series) / 7 + k / 3) + rng.normal(0, 2, n_series)
        for lo in range(0, n_series, per_batch):
            hi = min(n_series, lo + per_batch)
            out.append(
                SampleBatch(
                    [
                        label_set({"__name__": name, "pod": f"p{i}", "host": f"h{i // 50}"})
                        for i in range(lo, hi)
                    ],
                    np.arange(hi - lo, dtype=np.int32),
                    np.full(hi - lo, T0 + k * STEP, np.int64),
                    vals[lo:hi],
                )
            )
    return out


def test_a_keyed_worker_detector_holds_at_most_1_kib_a_series_and_no_object_per_series() -> None:
    """50,000 series, compact state, no labels kept: every byte the detector allocated
    (numpy arrays included, tracemalloc) minus the bank's spare capacity is at most
    1 KiB a series, and the number of allocated blocks does not grow with the series."""
    n = 50_000
    data = _rounds(n, 2, 5000, seed=1)  # the inputs exist before the measurement
    det = OnlineAnomalyDetection(
        Discard(), max_series=n + 10, compact=True, keep_labels=False, registry=Registry()
    )
    det.process(_rounds(10, 1, 10, seed=2, name="warm")[0])  # compile, first rows
    tracemalloc.start()
    try:
        gc.collect()
        before, blocks = tracemalloc.get_traced_memory()[0], sys.getallocatedblocks()
        for b in data:
            det.process(b)
        gc.collect()  # cycles of the batches' temporaries are garbage, not held
        grown = tracemalloc.get_traced_memory()[0] - before
        new_blocks = sys.getallocatedblocks() - blocks
    finally:
        tracemalloc.stop()
    assert det.series_count == n + 10
    width = det.runner.state_nbytes()
    assert width == 907
    # zero rows beyond the series held cost no memory (pages mapped when first written)
    spare = (det.runner.capacity - det.series_count) * width
    per_series = (grown - spare) / n
    assert width <= per_series <= 1024, per_series
    assert new_blocks < n // 20, new_blocks  # a label tuple or dict entry a series: >= n


def test_labels_are_kept_only_for_the_state_file() -> None:
    data = _rounds(2000, 1, 500, seed=3)
    sizes = {}
    for keep in (True, False):
        det = OnlineAnomalyDetection(Discard(), keep_labels=keep, registry=Registry())
        for b in data:
            det.process(b)
        sizes[keep] = len(det._labels)
    assert sizes == {True: 2000, False: 0}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 300), st.integers(-5, 10**6)), max_size=80),
        max_size=12,
    )
)
def test_the_series_index_agrees_with_a_dict(rounds: list[list[tuple[int, int]]]) -> None:
    index, want = SeriesIndex(), {}
    for pairs in rounds:
        keys = np.array([k for k, _ in pairs], np.uint64)
        index.assign(keys, np.array([v for _, v in pairs], np.int64))
        seen: set[int] = set()
        for k, v in pairs:  # a key given twice in one call keeps its first value
            if k not in seen:
                want[k] = v
                seen.add(k)
        probe = np.arange(0, 320, dtype=np.uint64)
        got = index.lookup(probe)
        assert got.tolist() == [want.get(int(k), ABSENT) for k in probe]
        assert len(index) == len(want)
    keys, vals = index.items()
    index.keep(vals >= 0)
    assert len(index) == sum(v >= 0 for v in want.values())
    assert index.lookup(keys[vals >= 0]).tolist() == vals[vals >= 0].tolist()
    with pytest.raises(ValueError):
        index.assign(np.zeros(1, np.uint64), np.zeros(1, np.int64))


def test_a_keyed_detector_restores_its_own_state_and_scores_like_the_uninterrupted_one() -> None:
    data = _rounds(300, 12, 100, seed=4)
    ref_store, got_store = MemoryStore(), MemoryStore()
    ref = OnlineAnomalyDetection(ref_store, compact=True, keep_labels=False, registry=Registry())
    for b in data:
        ref.process(b)
    first = OnlineAnomalyDetection(got_store, compact=True, keep_labels=False, registry=Registry())
    for b in data[:15]:
        first.process(b)
    full = first.dump_state()
    for b in data[15:21]:
        first.process(b)
    part = first.dump_state(first.take_changed())
    with np.load(io.BytesIO(full)) as z:
        assert z["labels"].size == 0 and len(z["keys"]) == 300  # keys only
    second = OnlineAnomalyDetection(got_store, compact=True, keep_labels=False, registry=Registry())
    assert second.restore_state(full) == 300
    assert second.restore_state(part, merge=True) == 300
    for b in data[21:]:
        second.process(b)

    def scores(s: MemoryStore) -> dict[tuple[tuple[str, str], ...], list[float]]:
        return {
            x.labels: x.values.tolist() for x in s.select(parse_selector("anomaly_score"), 0, 2**62)
        }

    assert scores(got_store) == scores(ref_store) and len(scores(ref_store)) == 300
    # a detector that keeps labels (a state file) cannot use a keyed-only state
    assert (
        OnlineAnomalyDetection(Discard(), compact=True, registry=Registry()).restore_state(full)
        == 0
    )


def test_a_format_2_state_file_with_labels_only_still_restores(tmp_path: Path) -> None:
    """What the previous version wrote (labels, no keys): both kinds of detector load it,
    the keys computed from the labels, and the selectors still prune it."""
    det = OnlineAnomalyDetection(Discard(), registry=Registry())
    for b in _rounds(30, 5, 30, seed=5):
        det.process(b)
    det.process(
        SampleBatch.from_arrays(label_set({"__name__": "other"}), np.array([T0]), np.ones(1))
    )
    with np.load(io.BytesIO(det.dump_state())) as z:
        parts = {k: z[k] for k in z.files if k != "keys"}
    parts["format"] = np.array([2], np.int64)
    buf = io.BytesIO()
    np.savez(buf, **parts)
    old = buf.getvalue()
    labels = [tuple(map(tuple, s)) for s in orjson.loads(parts["labels"].tobytes())]
    for keep in (True, False):
        again = OnlineAnomalyDetection(
            Discard(), selectors=["req"], keep_labels=keep, registry=Registry()
        )
        assert again.restore_state(old) == 30  # "other" no longer selected
        assert np.array_equal(again._keys[:30], series_keys(labels[:30]))
        assert again.runner.get_state(7) == det.runner.get_state(7)


@pytest.mark.parametrize("keep", [True, False])
def test_max_series_refuses_and_counts_by_key(keep: bool) -> None:
    det = OnlineAnomalyDetection(Discard(), max_series=100, keep_labels=keep, registry=Registry())
    data = _rounds(150, 2, 60, seed=6)
    for b in data:
        det.process(b)
    assert det.series_count == 100
    assert det.metrics.refused_series.get() == 50  # once per series, not per sample
    assert det.metrics.updates.get() == 200
    assert det.metrics.series.get() == 100


def test_a_full_dump_holds_the_state_of_series_not_scored_yet() -> None:
    """A series whose first samples were all NaN has a row but no score yet: a full dump
    (a view of the packed bank, compressed or not) still holds its state."""
    det = OnlineAnomalyDetection(Discard(), compact=True, keep_labels=False, registry=Registry())
    b = _rounds(3, 1, 3, seed=7)[0]
    b.values[2] = np.nan
    det.process(b)
    assert det.series_count == 3
    for compress in (False, True):
        again = OnlineAnomalyDetection(
            Discard(), compact=True, keep_labels=False, registry=Registry()
        )
        assert again.restore_state(det.dump_state(compress=compress)) == 3
        assert again.runner.get_state(2) == det.runner.get_state(2)
        assert again.runner.packed[2].any()  # not a zeroed row
