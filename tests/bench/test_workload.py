"""The benchmark workload: shape, realism of values, determinism, request splitting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.bench.workload import (
    METRICS,
    N_SERVICES,
    generate_workload,
    request_batches,
    workload_shape,
)
from perfintel.model import validate_label_set

START = 1_764_000_000_000


@pytest.fixture(scope="module")
def wl() -> SampleBatch:
    return generate_workload(n_series=120, hours=2, step_s=10, seed=1, start_ms=START)


def test_shape_and_labels(wl: SampleBatch) -> None:
    assert workload_shape(wl) == (120, 720)
    assert len(wl) == 120 * 720
    assert len(set(wl.series)) == 120
    names = [dict(s)["__name__"] for s in wl.series]
    assert {n: names.count(n) for n in set(names)} == {m: 20 for m in METRICS}
    assert sum(n.endswith("_total") for n in names) == 60  # half counters
    assert {dict(s)["service"] for s in wl.series} == {f"svc-{i:02d}" for i in range(N_SERVICES)}
    # instance alone tells series apart: {job="bench"} stays valid once names are dropped
    assert len({dict(s)["instance"] for s in wl.series}) == 120
    for s in wl.series:
        validate_label_set(s)
        assert dict(s)["job"] == "bench"
    ts = wl.timestamps.reshape(120, 720)
    assert np.all(np.diff(ts, axis=1) == 10_000)
    assert ts.min() >= START and ts.max() < START + 2 * 3_600_000


def test_values_look_like_real_metrics(wl: SampleBatch) -> None:
    v = wl.values.reshape(workload_shape(wl))
    names = np.array([dict(s)["__name__"] for s in wl.series])
    counters = v[np.char.endswith(names, "_total")]
    assert np.all(np.diff(counters, axis=1) >= 0)
    assert np.all(counters == np.round(counters))
    cpu = v[names == "bench_cpu_usage"]
    assert np.all((cpu >= 0) & (cpu <= 100))
    np.testing.assert_array_equal(cpu, np.round(cpu, 2))
    mem = v[names == "bench_memory_bytes"]
    assert np.all(mem % 4096 == 0) and mem.min() > 0
    lat = v[names == "bench_latency_seconds"]
    np.testing.assert_array_equal(lat, np.round(lat, 3))
    assert 0.001 < np.median(lat) < 5


def test_deterministic_under_seed(wl: SampleBatch) -> None:
    again = generate_workload(n_series=120, hours=2, step_s=10, seed=1, start_ms=START)
    other = generate_workload(n_series=120, hours=2, step_s=10, seed=2, start_ms=START)
    assert again.series == wl.series
    np.testing.assert_array_equal(again.timestamps, wl.timestamps)
    np.testing.assert_array_equal(again.values, wl.values)
    assert not np.array_equal(other.values, wl.values)


def test_request_batches_cover_everything_in_order(wl: SampleBatch) -> None:
    shards = request_batches(wl, shards=4, samples_per_request=3000)
    assert len(shards) == 4
    seen = 0
    for shard in shards:
        assert [len(b) for b in shard] == [3000] * 7 + [600]  # 100 steps of 30 series, then 20
        assert all(len(b.series) == 30 for b in shard)
        for prev, nxt in itertools.pairwise(shard):
            assert prev.timestamps.max() < nxt.timestamps.min()
        seen += sum(len(b) for b in shard)
    assert seen == len(wl)
    capped = request_batches(wl, shards=2, samples_per_request=6000, max_samples=12_000)
    assert sum(len(b) for s in capped for b in s) == 12_000
