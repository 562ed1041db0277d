"""Series on a grid for the analyses: bucket values, tiers versus raw, limits, both stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.errors import BadInputError, QueryLimitError
from perfintel.model import label_set, parse_selector
from perfintel.performance.fetch import fetch_buckets, fetch_grid, grid_for, sampling_step_ms
from perfintel.storage.base import Store
from perfintel.storage.duckdb import DuckDBStore, StoreOptions
from perfintel.storage.memory import MemoryStore

HOUR = 3_600_000
MIN = 60_000
DAY = 24 * HOUR
T0 = (int(time.time() * 1000) // DAY) * DAY - DAY  # yesterday 00:00: inside raw retention


@pytest.fixture(params=["duckdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "duckdb":
        s = DuckDBStore(tmp_path / "db", StoreOptions(background=False, wal_fsync=False))
    else:
        s = MemoryStore()
    rng = np.random.default_rng(0)
    ts = T0 + 15_000 * np.arange(4 * 240)  # 4 hours of 15-second samples
    for host in ("a", "b"):
        vals = rng.normal(10, 1, ts.size)
        vals[100] = np.nan  # a gap
        ok = np.isfinite(vals)
        s.append(
            SampleBatch.from_arrays(label_set({"__name__": "m", "host": host}), ts[ok], vals[ok])
        )
    s.append(SampleBatch.from_arrays(label_set({"__name__": "late"}), ts[-4:], np.ones(4)))
    if isinstance(s, DuckDBStore):
        s.flush(compact=True)
    yield s
    s.close()


def _manual(store: Store, start: int, step: int, size: int, host: str) -> dict[str, np.ndarray]:
    (raw,) = store.select(parse_selector(f'm{{host="{host}"}}'), start, start + step * size - 1)
    idx = (raw.timestamps - start) // step
    out = {k: np.full(size, np.nan) for k in ("avg", "min", "max", "last")}
    for i in range(size):
        v = raw.values[idx == i]
        if v.size:
            out["avg"][i], out["min"][i], out["max"][i], out["last"][i] = (
                v.mean(),
                v.min(),
                v.max(),
                v[-1],
            )
    return out


def test_grid_values_are_the_bucket_means(store: Store) -> None:
    grid = grid_for(T0 + 30_000, T0 + 2 * HOUR, MIN)
    assert grid.start_ms == T0 and grid.size == 121
    got = fetch_grid(store, parse_selector("m"), grid, max_series=10)
    assert [dict(ls)["host"] for ls in got.labels] == ["a", "b"]
    want = _manual(store, grid.start_ms, MIN, grid.size, "a")
    np.testing.assert_allclose(got.values[0], want["avg"])
    (inp,) = [s for s in got.inputs() if dict(s.labels)["host"] == "a"]
    assert not inp.counter


def test_buckets_from_a_tier_or_raw_agree(store: Store) -> None:
    for step in (MIN, 5 * MIN, HOUR):
        grid = grid_for(T0, T0 + 4 * HOUR - 1, step)
        got = fetch_buckets(
            store, parse_selector("m"), grid, ("avg", "min", "max", "last"), max_series=10
        )
        want = _manual(store, grid.start_ms, step, grid.size, "a")
        row = [dict(ls)["host"] for ls in got.labels].index("a")
        for k in ("avg", "min", "max", "last"):
            np.testing.assert_allclose(got.aggs[k][row], want[k], err_msg=f"{k} at step {step}")
        if step >= 5 * MIN and isinstance(store, DuckDBStore):
            assert got.source.startswith("tier:")


def test_limits_and_bad_grids(store: Store) -> None:
    grid = grid_for(T0, T0 + HOUR, MIN)
    with pytest.raises(QueryLimitError, match="more than 1"):
        fetch_grid(store, parse_selector("m"), grid, max_series=1)
    with pytest.raises(BadInputError, match="step"):
        grid_for(T0, T0 + 365 * 24 * HOUR, 1000)
    with pytest.raises(BadInputError, match="end"):
        grid_for(T0, T0 - 1, MIN)
    assert fetch_grid(store, parse_selector("nothing"), grid, max_series=5).labels == []
    empty = fetch_buckets(store, parse_selector("nothing"), grid, ("avg",), max_series=5)
    assert empty.labels == [] and empty.aggs["avg"].shape == (0, grid.size)


def test_sampling_step_is_the_scrape_interval(store: Store) -> None:
    end = T0 + 4 * HOUR - 1
    start = end - 3 * HOUR

    def step(selector: str, max_points: int = 2000) -> int:
        return sampling_step_ms(
            store,
            parse_selector(selector),
            start,
            end,
            max_points=max_points,
            fallback_ms=MIN,
            max_series=10,
        )

    assert step("m") == 15_000
    # a series sampled once a minute beside them sets the step: each bucket keeps a sample
    rng = np.random.default_rng(1)
    ts = T0 + 60_000 * np.arange(4 * 60) + rng.integers(-300, 300, 4 * 60)  # with jitter
    store.append(
        SampleBatch.from_arrays(label_set({"__name__": "m", "host": "c"}), ts, np.ones(ts.size))
    )
    assert step("m") == MIN
    assert step('m{host="a"}', max_points=100) == 120_000  # 3 h in at most 100 buckets
    assert step("nothing_here") == MIN  # no raw samples: the fallback
