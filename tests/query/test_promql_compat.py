"""perfintel's PromQL against a real Prometheus 2.42, through both HTTP APIs.

The same generated data (see ``promql_harness.generate_dataset``) goes into a
real Prometheus (OpenMetrics → ``promtool tsdb create-blocks-from openmetrics``)
and into the store from ``promql_store_factory`` behind perfintel's router.
Every query of the corpus runs on both; answers must have the same series,
the same timestamps and values within 1e-9 relative (NaN equals NaN).

Staleness markers cannot be expressed in OpenMetrics: the "stale" series
here (``batch_*{job="early"}`` and friends) simply stop, and both engines
drop them once the 5-minute lookback has passed. The marker itself is
covered by ``test_promql_semantics.py``.

Run: ``.venv/bin/python -m pytest tests/query/test_promql_compat.py -m external -s``
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from promql_harness import (
    HOUR,
    AppServer,
    PrometheusServer,
    bit_identical,
    compare,
    dataset_base,
    generate_dataset,
    to_batches,
)

from perfintel.api import errors
from perfintel.api.prometheus import router

pytestmark = pytest.mark.external

REQUIRED_IDENTICAL = 0.98

SEL = [
    "http_requests_total",
    'http_requests_total{service="api"}',
    'http_requests_total{service!="api"}',
    'http_requests_total{service=~"api|web",code="500"}',
    'http_requests_total{service!~"a.*"}',
    '{__name__=~"node_.*"}',
    "node_load offset 10m",
    "node_load offset -5m",
    "sparse_metric",
    "batch_progress",
    "batch_jobs_total",
    "jitter_total",
    "odd_values",
    "memory_bytes @ end()",
    "node_load @ start()",
    "sum(node_load @ end())",
    "latency_seconds_count",
]

RATES = [
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[30s])",
    "rate(http_requests_total[2h])",
    "increase(http_requests_total[10m])",
    "increase(http_requests_total[1h])",
    "irate(http_requests_total[5m])",
    "delta(node_load[5m])",
    "delta(memory_bytes[2m])",
    "idelta(node_load[2m])",
    "rate(jitter_total[5m])",
    "increase(jitter_total[3m])",
    "irate(jitter_total[1m])",
    "rate(batch_jobs_total[5m])",
    "increase(batch_jobs_total[15m])",
    "rate(sparse_metric[15m])",
    "delta(sparse_metric[30m])",
    "rate(http_requests_total[5m] offset 1h)",
    "rate(http_requests_total[5m] @ end())",
    "increase(http_requests_total[5m] @ start() offset -10m)",
    "deriv(node_load[10m])",
    "deriv(memory_bytes[5m])",
    "deriv(sparse_metric[30m])",
    "predict_linear(node_load[15m], 3600)",
    "predict_linear(http_requests_total[10m], 600)",
    "resets(http_requests_total[1h])",
    "resets(jitter_total[30m])",
    "changes(node_load[10m])",
    "changes(sparse_metric[30m])",
    "changes(batch_jobs_total[5m])",
]

OVER_TIME = [
    f"{fn}_over_time({arg})"
    for fn in ("avg", "min", "max", "sum", "count", "last", "present", "stddev", "stdvar")
    for arg in ("node_load[10m]", "sparse_metric[20m]", "batch_progress[7m]")
] + [
    "avg_over_time(odd_values[10m])",
    "max_over_time(odd_values[10m])",
    "min_over_time(odd_values[10m])",
    "sum_over_time(memory_bytes[1h])",
    "stddev_over_time(memory_bytes[30m])",
    "quantile_over_time(0.5, node_load[10m])",
    "quantile_over_time(0.9, memory_bytes[30m])",
    "quantile_over_time(0, sparse_metric[30m])",
    "quantile_over_time(1, node_load[3m])",
    "quantile_over_time(1.5, node_load[3m])",
    "last_over_time(node_load[1m] offset 5m)",
    "absent_over_time(nonexistent_metric[5m])",
    'absent_over_time(batch_progress{job="early"}[10m])',
    'absent_over_time(batch_progress{job="late",x!="y"}[1m])',
]

AGGREGATIONS = [
    "sum(rate(http_requests_total[5m]))",
    "sum by (service) (rate(http_requests_total[5m]))",
    "sum without (instance, code) (rate(http_requests_total[5m]))",
    "avg by (service) (node_load)",
    "avg(memory_bytes)",
    "min by (instance) (node_load)",
    "max(node_load)",
    "count(http_requests_total)",
    "count by (service) (batch_progress or node_load)",
    "stddev(node_load)",
    "stdvar by (service) (memory_bytes)",
    "stddev by (service, instance) (node_load)",
    "topk(2, node_load)",
    "bottomk(3, node_load)",
    "topk by (service) (1, rate(http_requests_total[5m]))",
    "bottomk(1, memory_bytes)",
    "quantile(0.5, node_load)",
    "quantile by (service) (0.9, rate(http_requests_total[5m]))",
    "quantile(0, memory_bytes)",
    'count_values("load", round(node_load))',
    'count_values by (service) ("code", http_requests_total > 1e9)',
    "group by (service) (node_load)",
    "group(memory_bytes)",
    'sum by (__name__) ({__name__=~"node_load|memory_bytes"})',
    "max by (job) (batch_progress)",
    "sum(sparse_metric)",
    "count(odd_values)",
    "sum(odd_values)",
    "avg(odd_values)",
    "topk(1, odd_values)",
]

BINARY = [
    "node_load * 2",
    "2 * node_load",
    "node_load / 0",
    "-node_load / 0",
    "node_load % 1.5",
    "node_load ^ 2",
    "2 ^ node_load",
    "-node_load",
    "node_load + node_load",
    "node_load - on(service, instance) memory_bytes / 1e9",
    'rate(http_requests_total{code="500"}[5m]) / ignoring(code) rate(http_requests_total{code="200"}[5m])',
    "rate(http_requests_total[5m]) / on(service, instance) group_left node_load",
    "node_load * on(service, instance) group_right rate(http_requests_total[5m])",
    'rate(http_requests_total[5m]) * on(service, instance) group_left(kind) label_replace(node_load, "kind", "load", "", "")',
    "sum by (service) (rate(http_requests_total[5m])) / on(service) group_left sum by (service) (node_load)",
    "node_load > 2",
    "node_load > bool 2",
    "2 < node_load",
    "2 > bool node_load",
    "node_load == bool node_load",
    "node_load > on(service, instance) (memory_bytes / 1e9)",
    "node_load <= bool on(service, instance) (memory_bytes / 1e9)",
    "node_load != 0",
    "rate(http_requests_total[5m]) >= 10",
    "node_load and node_load > 2",
    "node_load or memory_bytes",
    "node_load unless node_load < 0",
    "sparse_metric or on() vector(0)",
    "batch_progress unless on(job) batch_jobs_total > 100",
    "node_load and on(service) (memory_bytes > 2e9)",
    "node_load unless ignoring(instance) memory_bytes < 1e9",
    "node_load + on(service) node_load",
    'rate({__name__=~"node_load|memory_bytes"}[5m])',
    "node_load + ignoring(instance) memory_bytes",
    "node_load atan2 memory_bytes",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "-2 ^ 2",
    "time() - 3600",
    "(node_load > 1) * 10 + 1",
]

HISTOGRAMS = [
    "histogram_quantile(0.9, rate(latency_seconds_bucket[5m]))",
    "histogram_quantile(0.5, rate(latency_seconds_bucket[10m]))",
    "histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "histogram_quantile(0.75, sum by (service, le) (increase(latency_seconds_bucket[15m])))",
    "histogram_quantile(0, rate(latency_seconds_bucket[5m]))",
    "histogram_quantile(1, rate(latency_seconds_bucket[5m]))",
    "histogram_quantile(1.5, rate(latency_seconds_bucket[5m]))",
    "histogram_quantile(-1, rate(latency_seconds_bucket[5m]))",
    "histogram_quantile(0.9, latency_seconds_bucket)",
    "rate(latency_seconds_sum[5m]) / rate(latency_seconds_count[5m])",
]

FUNCTIONS = [
    "abs(node_load)",
    "ceil(node_load)",
    "floor(node_load)",
    "round(node_load)",
    "round(node_load, 0.5)",
    "clamp(node_load, 0, 2)",
    "clamp_min(node_load, 1)",
    "clamp_max(node_load, 1)",
    "clamp(node_load, 2, 1)",
    "exp(node_load)",
    "ln(memory_bytes)",
    "log2(memory_bytes)",
    "log10(memory_bytes)",
    "sqrt(memory_bytes)",
    "sqrt(node_load)",
    "sgn(node_load)",
    "ln(node_load)",
    'label_replace(node_load, "svc", "$1-x", "service", "(a.*)")',
    'label_replace(node_load, "service", "", "service", "api")',
    'label_replace(node_load, "x", "${1}_$2", "service", "(.)(.*)")',
    'label_join(node_load, "id", ":", "service", "instance")',
    'label_join(memory_bytes, "service", "", "instance")',
    "vector(1)",
    "vector(time())",
    "scalar(sum(node_load))",
    "scalar(node_load)",
    "time()",
    "timestamp(node_load)",
    "timestamp(sparse_metric)",
    "timestamp(rate(http_requests_total[5m]))",
    "day_of_week()",
    "hour()",
    "minute(timestamp(node_load))",
    "month()",
    "year()",
    "day_of_month()",
    "days_in_month()",
    "hour(vector(1700000000))",
    "absent(nonexistent_metric)",
    'absent(nonexistent_metric{job="x",env=~"p.*"})',
    'absent(batch_progress{job="late"})',
    "absent(node_load)",
    "sin(node_load) + cos(node_load)",
    "deg(atan(node_load))",
]

SUBQUERIES = [
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(node_load[10m:])",
    "rate(http_requests_total[10m:1m])",
    "min_over_time(sum by (service) (node_load)[15m:2m])",
    "deriv(node_load[20m:1m])",
    "max_over_time(node_load[1h:5m] offset 30m)",
    "sum_over_time(vector(1)[5m:1m])",
    "quantile_over_time(0.5, node_load[10m:30s])",
    "count_over_time(sparse_metric[30m:1m])",
    "max_over_time(node_load[10m:1m] @ end())",
    "avg_over_time((node_load > 2)[20m:1m])",
    "last_over_time(batch_progress[10m:1m])",
]

EDGES = [
    'label_replace(node_load, "x", "$1", "service", "(")',
    "topk(scalar(count(node_load)) - 4, node_load)",
    "quantile(scalar(vector(0.25)), memory_bytes)",
    'count_values without (instance) ("v", ceil(node_load))',
    "node_load * 1e300 * 1e10",
    "vector(1e-320)",
    "vector(1) / 3",
    "vector(123456789012345680000)",
    "absent_over_time(nonexistent_metric[10m:1m])",
    "changes(node_load[1h:])",
    "max_over_time(node_load[30m:5m] @ start())",
    "predict_linear(node_load[10m] @ end(), 60)",
    "stddev_over_time(http_requests_total[10m])",
    "sum by (le) (increase(latency_seconds_bucket[10m]))",
    "node_load + on(service, instance) group_left(nonexistent) memory_bytes",
    "node_load == 0",
    "sum by (nonexistent) (node_load)",
    "avg without (instance) (node_load)",
    "max by (service) (topk(1, node_load))",
    "timestamp(node_load offset 5m)",
    "minute(vector(1700000000)) + hour(vector(1700000000))",
    "time() % 3600",
    "count_over_time(odd_values[1h])",
    "sum_over_time(odd_values[2h])",
    "stdvar_over_time(odd_values[30m])",
    "quantile_over_time(0.5, odd_values[30m])",
    "deriv(odd_values[30m])",
    "changes(odd_values[30m])",
    "rate(odd_values[10m])",
    "irate(batch_jobs_total[1m])",
    "idelta(batch_progress[1m])",
    "last_over_time(sparse_metric[10m])",
    "present_over_time(sparse_metric[3m])",
    "sparse_metric offset 3m",
    "sparse_metric > bool on() group_left vector(10)",
    "-sparse_metric + 1",
    "bottomk(1, sparse_metric) or topk(1, sparse_metric)",
    "sum(batch_progress) by (job) / count(batch_progress) by (job)",
    "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[1m] offset 30m)))",
    "rate(http_requests_total[5m] offset 5m) - rate(http_requests_total[5m])",
    'label_replace(node_load, "instance", "x", "instance", ".*")',
    "topk(2.5, memory_bytes)",
    "timestamp(node_load @ end())",
    "quantile(0.5, odd_values or node_load)",
    'count_values("v", odd_values)',
    "-odd_values",
    "odd_values > 0",
    "sum_over_time(node_load[1m:10s])",
    "node_load offset 1h @ start()",
    'scalar(node_load{service="api",instance="0"}) - node_load',
    "1 - node_load",
    "node_load - 1",
    "max_over_time(http_requests_total[5m])",
    "min_over_time(rate(http_requests_total[1m])[10m:])",
]

INSTANT_ONLY = [
    "node_load[5m]",
    "sparse_metric[30m]",
    "node_load[10m:2m]",
    '"hello"',
    "1",
    "sort(node_load)",
    "sort_desc(memory_bytes)",
    "sort(rate(http_requests_total[5m]))",
    "sort_desc(odd_values or node_load)",
    "rate(http_requests_total[5m])[30m:5m]",
    "max_over_time(node_load[5m])[1h:10m] offset 10m",
    "time()",
    "scalar(node_load)",
    "vector(2) @ 100",
]


def _lookback_edges(series: list[Any]) -> list[tuple[str, str, dict[str, str]]]:
    """Instant queries exactly at, and 1 ms past, the end of a sparse sample's lookback."""
    sparse = next(s for s in series if s.labels.get("__name__") == "sparse_metric")
    out = []
    for t in sparse.timestamps[5:9].tolist():
        for delta in (0, 300_000, 300_001, 299_999):
            out.append(("query", 'sparse_metric{id="a"}', {"time": f"{(t + delta) / 1000:.3f}"}))
    return out


def _corpus(base: int) -> list[tuple[str, str, dict[str, str]]]:
    start, end = (base + HOUR) / 1000, (base + 5 * HOUR) / 1000
    rng = {"start": str(start), "end": str(end), "step": "60"}
    odd = {"start": str(start + 13), "end": str(start + 3 * 3600), "step": "137"}
    out: list[tuple[str, str, dict[str, str]]] = []
    for q in (
        SEL
        + RATES
        + OVER_TIME
        + AGGREGATIONS
        + BINARY
        + HISTOGRAMS
        + FUNCTIONS
        + SUBQUERIES
        + EDGES
    ):
        out.append(("query_range", q, rng))
    for q in [
        "rate(http_requests_total[5m])",
        "node_load",
        "sparse_metric",
        "avg_over_time(node_load[10m:])",
        "changes(sparse_metric[30m])",
    ]:
        out.append(("query_range", q, odd))
    instant_times = [
        base + 2 * HOUR + 7_000,
        base + 6 * HOUR + 120_000,
        base + 6 * HOUR + 420_000,
        base + int(2.6 * HOUR),
    ]
    for i, q in enumerate(INSTANT_ONLY + SEL[:6] + RATES[:6] + AGGREGATIONS[:8] + FUNCTIONS[:6]):
        out.append(("query", q, {"time": str(instant_times[i % len(instant_times)] / 1000)}))
    return out


EXPLANATIONS: dict[str, str] = {
    "predict_linear(node_load[10m] @ end(), 60)": (
        "Prometheus 2.42 quirk: in a range query, a range-vector function with @ and a second "
        "(scalar) argument is not rewritten as step-invariant; Prometheus returns only the first "
        "10 steps, with windows that drift. The first step agrees; perfintel returns the "
        "step-invariant value at every step, as @ defines (and as the instant query gives)."
    ),
}


def _run(client: Any, kind: str, query: str, params: dict[str, str]) -> dict[str, Any]:
    try:
        resp = client.post(f"/api/v1/{kind}", data={"query": query, **params})
    except httpx.HTTPError as exc:
        return {"status": "transport error", "error": repr(exc)}
    try:
        return resp.json()  # type: ignore[no-any-return]
    except ValueError:
        return {"status": f"HTTP {resp.status_code}", "error": resp.text[:200]}


def test_promql_matches_prometheus(promql_store_factory: Any) -> None:
    base = dataset_base()
    series = generate_dataset(base)
    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    app.state.store = promql_store_factory(to_batches(series))
    corpus = _corpus(base) + _lookback_edges(series)
    assert len(corpus) >= 150
    failures: list[tuple[str, str, list[str]]] = []
    nonempty = same_points = total_points = 0
    with (
        PrometheusServer(series) as prom,
        AppServer(app) as srv,
        httpx.Client(base_url=prom.url, timeout=60) as theirs,
        httpx.Client(base_url=srv.url, timeout=60) as ours,
    ):
        for kind, query, params in corpus:
            reference = _run(theirs, kind, query, params)
            answer = _run(ours, kind, query, params)
            diffs = compare(answer, reference, ordered=kind == "query" and query.startswith("sort"))
            same, total = bit_identical(answer, reference)
            same_points += same
            if total - same and __import__("os").environ.get("PROMQL_COMPAT_DEBUG"):
                print("not byte-identical:", total - same, kind, query)
            total_points += total
            nonempty += bool(reference.get("data", {}).get("result"))
            if diffs:
                failures.append((kind, query, diffs))
    identical = 1 - len(failures) / len(corpus)
    print(
        f"\nPromQL compatibility: {len(corpus) - len(failures)}/{len(corpus)} identical ({identical:.1%}); "
        f"{nonempty} non-empty answers from Prometheus; "
        f"{same_points}/{total_points} points with byte-identical value strings"
    )
    for kind, query, diffs in failures:
        print(f"- {kind} {query}\n    why: {EXPLANATIONS.get(query, 'unexplained')}")
        for d in diffs[:5]:
            print(f"    {d}")
    assert identical >= REQUIRED_IDENTICAL
