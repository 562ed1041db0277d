"""Aggregation operators, vectorised over groups, against Prometheus 2.x's per-sample loop.

The reference below is a transcription of ``aggregation()`` in Prometheus 2.42
(``promql/engine.go``): each group folds its members one at a time, in input
order, with plain float64 arithmetic (Python floats are IEEE doubles too).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfintel.query.promql.aggregations import aggregate
from perfintel.query.promql.values import Vec

_SPECIALS = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 1.5, -2.25, 5e-324]
_OPS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar")


def _reference(op: str, values: list[float]) -> float:
    """One group at one step: Prometheus 2.42's fold over the present members."""
    value, mean, count = values[0], values[0], 1
    for v in values[1:]:
        count += 1
        if op == "sum":
            value += v
        elif op == "avg":
            if math.isinf(mean) and (
                (math.isinf(v) and (mean > 0) == (v > 0))
                or (not math.isinf(v) and not math.isnan(v))
            ):
                continue
            mean += v / count - mean / count
        elif op == "min":
            if value > v or math.isnan(value):
                value = v
        elif op == "max":
            if value < v or math.isnan(value):
                value = v
        elif op in ("stddev", "stdvar"):
            delta = v - mean
            mean += delta / count
            value = (0.0 if count == 2 else value) + delta * (v - mean)
    if op == "avg":
        return mean
    if op == "count":
        return float(count)
    if op == "group":
        return 1.0
    if op in ("stddev", "stdvar"):
        var = (value if count > 1 else 0.0) / count
        return float(np.sqrt(var)) if op == "stddev" else var
    return value


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


@pytest.mark.parametrize("op", _OPS)
@pytest.mark.parametrize("seed", range(4))
def test_aggregations_replay_prometheus_fold(op: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n, steps = int(rng.integers(0, 30)), int(rng.integers(1, 8))
        values = rng.normal(0, 10, (n, steps))
        odd = rng.random((n, steps)) < 0.3
        values[odd] = rng.choice(_SPECIALS, int(odd.sum()))
        present = rng.random((n, steps)) < 0.8
        labels = [(("g", str(int(rng.integers(0, 3)))), ("i", str(i))) for i in range(n)]
        vec = Vec(labels, values, present)
        got = aggregate(op, vec, ["g"], False, None)
        groups = {ls[0] for ls in labels}
        assert sorted(got.labels) == sorted(
            (g,) for g in groups if any(present[i].any() for i in range(n) if labels[i][0] == g)
        )
        for row, key in enumerate(got.labels):
            members = [i for i in range(n) if labels[i][0] == key[0]]
            for j in range(steps):
                seen = [float(values[i, j]) for i in members if present[i, j]]
                assert bool(got.present[row, j]) == bool(seen)
                if seen:
                    want = _reference(op, seen)
                    assert _same(float(got.values[row, j]), want), (op, seen, got.values[row, j])


def test_sum_of_negative_zeros_stays_negative() -> None:
    vec = Vec(
        [(("i", "1"),), (("i", "2"),)],
        np.array([[-0.0, -0.0, 1.0], [-0.0, 0.0, -1.0]]),
        np.ones((2, 3), bool),
    )
    got = aggregate("sum", vec, [], None, None)
    assert [math.copysign(1, v) for v in got.values[0]] == [-1.0, 1.0, 1.0]
