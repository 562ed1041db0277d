"""The demo data set: deterministic, seasonal, and containing its scenario."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.demo import DEMO_SERVICES, demo_events, generate_demo
from perfintel.model import LabelSet, validate_label_set

END_MS = 1_764_115_200_000  # 2025-11-26T00:00:00Z


def _series(batch: SampleBatch) -> dict[LabelSet, tuple[np.ndarray, np.ndarray]]:
    return {labels: (ts, vals) for labels, ts, vals in batch.iter_series()}


def _find(
    data: dict[LabelSet, tuple[np.ndarray, np.ndarray]], **want: str
) -> tuple[np.ndarray, np.ndarray]:
    hits = [v for k, v in data.items() if all(dict(k).get(n) == x for n, x in want.items())]
    assert len(hits) == 1, (want, len(hits))
    return hits[0]


@pytest.fixture(scope="module")
def week() -> dict[LabelSet, tuple[np.ndarray, np.ndarray]]:
    return _series(SampleBatch.concat(generate_demo(end_ms=END_MS, days=7, step_s=300)))


def test_deterministic_under_seed() -> None:
    a = list(generate_demo(end_ms=END_MS, days=1, step_s=120, seed=3))
    b = list(generate_demo(end_ms=END_MS, days=1, step_s=120, seed=3))
    c = list(generate_demo(end_ms=END_MS, days=1, step_s=120, seed=4))
    assert len(a) == len(b) > 1
    for x, y in zip(a, b, strict=True):
        assert x.series == y.series
        np.testing.assert_array_equal(x.series_idx, y.series_idx)
        np.testing.assert_array_equal(x.timestamps, y.timestamps)
        np.testing.assert_array_equal(x.values, y.values)
    assert not all(np.array_equal(x.values, z.values) for x, z in zip(a, c, strict=False))


def test_batches_are_in_time_order_and_end_before_end_ms() -> None:
    batches = list(generate_demo(end_ms=END_MS, days=1, step_s=60, batch_hours=4))
    assert len(batches) == 6
    for prev, nxt in itertools.pairwise(batches):
        assert prev.timestamps.max() < nxt.timestamps.min()
    assert max(int(b.timestamps.max()) for b in batches) <= END_MS
    for b in batches:
        for _, ts, _ in b.iter_series():
            assert np.all(np.diff(ts) > 0)


def test_labels_valid(week: dict[LabelSet, tuple[np.ndarray, np.ndarray]]) -> None:
    services = set()
    for labels in week:
        validate_label_set(labels)
        d = dict(labels)
        assert {"service", "instance", "job"} <= d.keys()
        services.add(d["service"])
    assert services == set(DEMO_SERVICES)
    assert 400 < len(week) < 1000


def test_daily_seasonality(week: dict[LabelSet, tuple[np.ndarray, np.ndarray]]) -> None:
    _, vals = _find(
        week,
        __name__="http_requests_total",
        instance="api-gateway-0:8080",
        code="200",
        method="GET",
    )
    rate = np.diff(vals)
    rate = np.where(rate < 0, np.nan, rate)  # a reset
    rate = np.nan_to_num(rate, nan=float(np.nanmean(rate)))
    x = rate - rate.mean()
    lag = 86_400 // 300
    day_corr = float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))
    half_day_corr = float(np.dot(x[: -lag // 2], x[lag // 2 :]) / np.dot(x, x))
    assert day_corr > 0.5
    assert half_day_corr < 0


def test_counter_resets_on_restart(week: dict[LabelSet, tuple[np.ndarray, np.ndarray]]) -> None:
    resets = {
        dict(k)["instance"]
        for k, (_, v) in week.items()
        if dict(k)["__name__"] == "http_requests_total" and np.any(np.diff(v) < 0)
    }
    assert "api-gateway-2:8080" in resets  # the crash
    assert {"auth-0:8080", "auth-1:8080"} <= resets  # deploys and OOM kills
    # the target is down (not scraped) at a restart, and `up` says so
    _, up = _find(week, __name__="up", instance="auth-0:8080")
    assert 0 < int((up == 0).sum()) <= 4


def test_disk_fills_and_logs_rotate(week: dict[LabelSet, tuple[np.ndarray, np.ndarray]]) -> None:
    ts, avail = _find(
        week,
        __name__="node_filesystem_avail_bytes",
        instance="postgres-0:9100",
        mountpoint="/var/lib/postgresql",
    )
    _, size = _find(
        week,
        __name__="node_filesystem_size_bytes",
        instance="postgres-0:9100",
        mountpoint="/var/lib/postgresql",
    )
    slope = np.polyfit((ts - ts[0]) / 86_400_000, avail / size, 1)[0]
    assert -0.03 < slope < -0.015  # about 2.4 % of the disk a day
    assert avail[-1] / size[-1] < 0.2
    _, logs = _find(
        week,
        __name__="node_filesystem_avail_bytes",
        instance="api-gateway-0:9100",
        mountpoint="/var/log",
    )
    jumps = np.diff(logs) > 1e9  # logrotate frees gigabytes at once
    assert 5 <= int(jumps.sum()) <= 8


def test_memory_leak_and_regression(week: dict[LabelSet, tuple[np.ndarray, np.ndarray]]) -> None:
    events = demo_events(end_ms=END_MS, days=7, step_s=300)
    kinds = {e.kind for e in events}
    assert {"deploy", "oom", "memory_leak", "incident", "disk_fill", "restart"} <= kinds
    oom = next(e for e in events if e.kind == "oom" and e.instance == "auth-0:8080")
    ts, mem = _find(week, __name__="process_resident_memory_bytes", instance="auth-0:8080")
    before = mem[ts < oom.start_ms]
    assert before[-1] > 2.5 * np.median(mem)  # grew until the OOM kill
    ts, mem = _find(week, __name__="process_resident_memory_bytes", instance="checkout-0:8080")
    deploy = next(e for e in events if e.kind == "deploy" and e.service == "checkout")
    assert np.median(mem[ts > deploy.end_ms + 3_600_000]) > 1.1 * np.median(
        mem[ts < deploy.start_ms]
    )
    _, versions = _find(week, __name__="deploy_info", instance="checkout-0:8080", version="2.5.0")
    assert np.all(versions == 1)


def test_incident_latency_and_errors(week: dict[LabelSet, tuple[np.ndarray, np.ndarray]]) -> None:
    inc = next(e for e in demo_events(end_ms=END_MS, days=7, step_s=300) if e.kind == "incident")
    ts, s = _find(week, __name__="http_request_duration_seconds_sum", instance="search-0:8080")
    _, c = _find(week, __name__="http_request_duration_seconds_count", instance="search-0:8080")
    mean_latency = np.diff(s) / np.maximum(np.diff(c), 1)
    inside = (ts[1:] > inc.start_ms) & (ts[1:] <= inc.end_ms)
    assert np.max(mean_latency[inside]) > 4 * np.median(mean_latency[~inside])
    _, errors = _find(
        week, __name__="http_requests_total", instance="search-0:8080", code="500", method="GET"
    )
    err_rate = np.diff(errors)
    assert err_rate[inside].mean() > 20 * np.median(err_rate[~inside])


def test_histogram_buckets_are_cumulative(
    week: dict[LabelSet, tuple[np.ndarray, np.ndarray]],
) -> None:
    buckets = sorted(
        (float(dict(k)["le"]), v)
        for k, (_, v) in week.items()
        if dict(k)["__name__"] == "http_request_duration_seconds_bucket"
        and dict(k)["instance"] == "checkout-1:8080"
    )
    assert buckets[-1][0] == float("inf")
    stacked = np.stack([v for _, v in buckets])
    assert np.all(np.diff(stacked, axis=0) >= 0)
    _, count = _find(
        week, __name__="http_request_duration_seconds_count", instance="checkout-1:8080"
    )
    np.testing.assert_array_equal(stacked[-1], count)
