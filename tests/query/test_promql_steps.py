"""A range query is its instant queries: every step of a range answer must equal
the instant query at that time (the engine evaluates all steps at once, so this
checks the vectorisation against the one-step path)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from promql_harness import HOUR, generate_dataset, to_batches

from perfintel.query.promql import Engine

BASE = 1_795_000_000_000 // HOUR * HOUR

QUERIES = [
    "rate(http_requests_total[5m])",
    "increase(jitter_total[3m])",
    "irate(http_requests_total[1m])",
    "delta(node_load[5m])",
    "deriv(node_load[10m])",
    "predict_linear(node_load[10m], 300)",
    "avg_over_time(sparse_metric[20m])",
    "stddev_over_time(node_load[7m])",
    "quantile_over_time(0.3, memory_bytes[10m])",
    "changes(sparse_metric[30m])",
    "resets(http_requests_total[1h])",
    "last_over_time(batch_progress[3m])",
    "absent_over_time(batch_progress{job='early'}[5m])",
    "sparse_metric",
    "batch_progress offset 3m",
    "sum by (service) (rate(http_requests_total[5m]))",
    "topk(2, node_load)",
    "quantile by (service) (0.5, node_load)",
    "count_values('v', round(node_load))",
    "histogram_quantile(0.9, rate(latency_seconds_bucket[5m]))",
    "node_load / on(service, instance) group_left memory_bytes",
    "node_load > 2",
    "batch_progress or sparse_metric",
    "node_load unless on(instance) (node_load < 0)",
    "max_over_time(rate(http_requests_total[5m])[20m:1m])",
    "timestamp(sparse_metric)",
    "absent(batch_progress{job='late'})",
    "scalar(sum(node_load)) * node_load",
    "label_replace(node_load, 'x', '$1', 'service', '(.)b')",
]


@pytest.fixture
def engine(promql_store_factory: Any) -> Engine:
    return Engine(promql_store_factory(to_batches(generate_dataset(BASE))))


@pytest.mark.parametrize("query", QUERIES)
def test_each_step_equals_the_instant_query(engine: Engine, query: str) -> None:
    start, step = BASE + HOUR + 7_000, 97_000
    res = engine.range(query, start, start + 60 * step, step)
    by_time: dict[int, dict[Any, float]] = {}
    for s in res.series:
        for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
            by_time.setdefault(t, {})[s.labels] = v
    for t in range(start, start + 60 * step + 1, step * 7):
        inst = engine.instant(query, t)
        got = {s.labels: float(s.values[0]) for s in inst.series}
        want = by_time.get(t, {})
        assert got.keys() == want.keys(), t
        for k, v in got.items():
            assert v == want[k] or (np.isnan(v) and np.isnan(want[k])), (t, k)
