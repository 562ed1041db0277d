"""perfintel's own model outputs are no candidates of a root cause or a correlation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.model import label_set, metric_name, parse_selector
from perfintel.performance import rca
from perfintel.performance.outputs import names_output, without_outputs
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

MIN = 60_000
HOUR = 60 * MIN
NOW = (int(time.time() * 1000) // HOUR) * HOUR - HOUR  # inside raw retention
INCIDENT = NOW - 20 * MIN


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    """Latency that steps up 10 minutes before the incident, CPU that follows it, and the
    online detector's band and score of the latency, as perfintel stores them."""
    s = DuckDBStore(tmp_path / "db", StoreOptions(background=False, wal_fsync=False))
    rng = np.random.default_rng(3)
    ts = NOW - 5 * HOUR + MIN * np.arange(5 * 60)
    step = (ts >= INCIDENT - 10 * MIN).astype(float)
    latency = 0.2 + 0.01 * rng.standard_normal(ts.size) + 0.5 * step
    cpu = 1.0 + 0.05 * rng.standard_normal(ts.size) + 0.8 * np.roll(step, 2)
    base = {"service": "a", "instance": "a-0"}
    series = {
        label_set({"__name__": "latency", **base}): latency,
        label_set({"__name__": "cpu", **base}): cpu,
        label_set({"__name__": "yhat_upper", "for": "latency", **base}): latency * 1.3,
        label_set({"__name__": "anomaly_score", "for": "latency", **base}): 5 * step,
    }
    for ls, v in series.items():
        s.append(SampleBatch.from_arrays(ls, ts, v))
    s.flush(compact=True)
    yield s
    s.close()


def test_without_outputs_keeps_a_selector_that_names_one() -> None:
    named = parse_selector('yhat_upper{service="a"}')
    assert names_output(named) and without_outputs(named) == named
    narrowed = without_outputs(parse_selector('{service="a"}'))
    assert narrowed.matches(label_set({"__name__": "latency", "service": "a"}))
    for name in ("yhat", "yhat_lower", "yhat_upper", "anomaly_score", "outlier_score"):
        assert not narrowed.matches(label_set({"__name__": name, "service": "a", "for": "x"}))
    # a pattern is no name: {__name__=~".+"} means the service's metrics
    assert not without_outputs(parse_selector('{__name__=~".+"}')).matches(
        label_set({"__name__": "yhat", "for": "x"})
    )


def _ranked(store: DuckDBStore, selector: str) -> rca.RootCauseReport:
    return rca.root_causes(
        store,
        parse_selector(selector),
        INCIDENT,
        window_ms=30 * MIN,
        baseline_ms=3 * HOUR,
        step_ms=MIN,
        limit=None,
    )


def test_root_cause_candidates_leave_out_model_outputs(store: DuckDBStore) -> None:
    rep = _ranked(store, '{service="a"}')
    assert rep.candidates == 2
    assert {metric_name(ls) for ls in rep.labels} == {"latency", "cpu"}
    assert metric_name(rep.labels[rep.causes[0].index]) == "latency"
    # asked for by name, an output is analysed
    asked = _ranked(store, 'yhat_upper{service="a"}')
    assert [metric_name(ls) for ls in asked.labels] == ["yhat_upper"]


def test_correlations_leave_out_model_outputs(store: DuckDBStore) -> None:
    rep = rca.correlations(
        store, [parse_selector('{service="a"}')], NOW - 5 * HOUR, NOW, MIN, max_lag_steps=5
    )
    assert {metric_name(ls) for ls in rep.labels} == {"latency", "cpu"}
