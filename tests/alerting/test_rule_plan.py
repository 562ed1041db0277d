"""The engine-free paths give the PromQL engine's answers: threshold plans and the round cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.alerting.rules.plan import reads, threshold_plan
from perfintel.alerting.rules.reader import RoundReader
from perfintel.batch import SampleBatch
from perfintel.model import STALE_NAN, label_set, parse_selector
from perfintel.query.promql.engine import Engine
from perfintel.storage.memory import MemoryStore

T = 1_700_000_000_000


def _store(values: list[list[float | None]]) -> MemoryStore:
    st_ = MemoryStore()
    for i, vals in enumerate(values):
        ts = [T + 20_000 * k for k, v in enumerate(vals) if v is not None]
        vs = [v for v in vals if v is not None]
        if ts:
            st_.append(
                SampleBatch.from_arrays(
                    label_set({"__name__": "m", "i": str(i), "job": "a" if i % 2 else "b"}),
                    np.array(ts),
                    np.array(vs, dtype=np.float64),
                )
            )
    return st_


values = st.lists(
    st.lists(
        st.one_of(st.none(), st.sampled_from([0.0, 1.0, -1.0, 2.5, float("nan"), STALE_NAN])),
        min_size=0,
        max_size=30,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    values,
    st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
    st.sampled_from([0.0, 1.0, -1.0]),
    st.integers(0, 40),
    st.booleans(),
    st.sampled_from(["", '{job="a"}', '{i=~"[12]"}']),
)
def test_threshold_plan_equals_the_engine(
    vals: list[list[float | None]], op: str, thr: float, at: int, swap: bool, match: str
) -> None:
    store = _store(vals)
    expr = f"{thr:g} {op} m{match}" if swap else f"m{match} {op} {thr:g}"
    plan = threshold_plan(expr)
    assert plan is not None
    t = T + 15_000 * at
    want = sorted((s.labels, float(s.values[0])) for s in Engine(store).instant(expr, t).series)
    got = sorted(plan.evaluate(RoundReader(store), t, 300_000))
    assert [g[0] for g in got] == [w[0] for w in want]
    assert np.allclose([g[1] for g in got], [w[1] for w in want], equal_nan=True)


@pytest.mark.parametrize(
    "expr",
    [
        "m > bool 1",
        "rate(m[5m]) > 1",
        "m offset 5m > 1",
        "m > on(i) n",
        "sum(m) > 1",
        "1 > bool 2",
        "m + 1",
    ],
)
def test_anything_else_goes_to_the_engine(expr: str) -> None:
    assert threshold_plan(expr) is None


def test_reads_know_how_far_back() -> None:
    got = {
        (r.name, r.back_ms, r.pinned)
        for r in reads("rate(a[5m] offset 1m) / b + max_over_time(c[10m:1m]) + d @ 100", 300_000)
    }
    assert got == {
        ("a", 360_000, False),
        ("b", 300_000, False),
        ("c", 900_000, False),
        ("d", 300_000, True),
    }


def test_round_reader_answers_from_one_fetch() -> None:
    store = _store([[1.0] * 20, [2.0] * 20, [3.0] * 20])
    r = RoundReader(store)
    r.prefetch({"m": 600_000}, T + 400_000)
    fetches = r.fetches
    for sel in ('m{i="1"}', 'm{job="b"}', "m", 'm{i!="0"}'):
        a = sorted(s.labels for s in r.select(parse_selector(sel), T + 100_000, T + 400_000))
        b = sorted(s.labels for s in store.select(parse_selector(sel), T + 100_000, T + 400_000))
        assert a == b
        sliced = r.select(parse_selector(sel), T + 100_000, T + 200_000)
        assert all(
            s.timestamps.min() >= T + 100_000 and s.timestamps.max() <= T + 200_000 for s in sliced
        )
    assert r.fetches == fetches
    r.forget("m")
    r.select(parse_selector("m"), T, T + 1)
    assert r.fetches == fetches + 1
