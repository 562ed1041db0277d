"""The root-cause core: onsets, propagation order, graph direction, odd inputs."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.analysis import rootcause
from perfintel.analysis.rootcause import DependencyGraph, rank_root_causes
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.errors import BadInputError
from perfintel.model import label_set

STEP = 60_000
N = 240
GRID = Grid(0, STEP, N)
T = 220 * STEP  # the incident time


def si(name: str, instance: str, values: np.ndarray, service: str = "") -> SeriesInput:
    labels = {"__name__": name, "instance": instance}
    if service:
        labels["service"] = service
    return SeriesInput(label_set(labels), np.asarray(values, dtype=float))


def noise(seed: int, level: float, sd: float) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, N)


def test_doctests() -> None:
    assert doctest.testmod(rootcause).failed == 0


def test_propagation_order_decides_and_the_explanation_says_so() -> None:
    pool = noise(1, 10, 0.5)
    pool[200:] = 40  # the database's connection pool saturates at 03:20
    db_latency = noise(2, 0.05, 0.001)
    db_latency[201:] += 0.04
    api_latency = noise(3, 0.12, 0.002)
    api_latency[203:] += 0.06  # the API waits on the database two minutes later
    unrelated = noise(4, 100, 1)
    unrelated[150:152] += 30  # a cron spike an hour earlier, bigger in sigmas
    series = [
        si("checkout_latency_seconds", "api-1", api_latency, "checkout"),
        si("db_latency_seconds", "db-1", db_latency, "postgres"),
        si("db_connections", "db-1", pool, "postgres"),
        si("batch_cpu", "batch-1", unrelated, "batch"),
        si("quiet", "q-1", noise(5, 3, 0.1), "quiet"),
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=90 * STEP, baseline_ms=100 * STEP)
    names = [dict(c.labels)["__name__"] for c in causes]
    assert names[0] == "db_connections"
    assert "quiet" not in names  # never left its baseline
    top = causes[0]
    assert top.onset_ms == 200 * STEP and top.shape == "saturation" and top.sigma > 20
    assert [series[f.index].labels for f in top.followers][:1] == [series[1].labels]
    assert top.explanation.startswith(
        "db_latency_seconds on db-1 rose 60 s after db_connections on db-1 saturated (onset 03:20:00"
    )
    api = next(c for c in causes if dict(c.labels)["__name__"] == "checkout_latency_seconds")
    assert api.explained_by is not None and "it may itself follow" in api.explanation
    assert names.index("checkout_latency_seconds") > names.index("db_latency_seconds")
    assert top.values.shape == top.expected.shape == top.z.shape


def test_graph_direction_when_known() -> None:
    """The caller moves a minute before its callee: data alone says the caller explains the
    callee; the graph says a fault cannot travel from caller to callee."""
    caller = noise(1, 1.0, 0.01)
    caller[200:] += 0.2
    callee = noise(2, 1.0, 0.01)
    callee[201:] += 0.25
    series = [si("latency", "a-1", caller, "a"), si("latency", "b-1", callee, "b")]
    kw = {"window_ms": 60 * STEP, "baseline_ms": 120 * STEP}
    without = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
    assert dict(without[0].labels)["service"] == "a" and without[0].followers
    graph = DependencyGraph.from_edges([("a", "b")])
    assert graph.reachable_from("b") == {"a", "b"} and graph.reachable_from("a") == {"a"}
    with_graph = rank_root_causes(T, series, GRID, graph, **kw)  # type: ignore[arg-type]
    assert dict(with_graph[0].labels)["service"] == "b"
    assert all(not c.followers for c in with_graph)


def test_a_change_after_the_incident_cannot_be_its_cause() -> None:
    before = noise(1, 5, 0.1)
    before[205:] += 1.0
    after = noise(2, 5, 0.1)
    after[225:] += 10.0  # much bigger, but five minutes after the incident
    series = [si("early", "x", before), si("late", "y", after)]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=120 * STEP)
    assert [dict(c.labels)["__name__"] for c in causes] == ["early", "late"]
    assert causes[1].score < causes[0].score - 100


def test_counters_are_analysed_as_increases() -> None:
    rng = np.random.default_rng(0)
    inc = rng.poisson(100, N).astype(float)
    inc[210:] += 80  # twice the errors
    counter = SeriesInput(
        label_set({"__name__": "errors_total", "instance": "x"}), np.cumsum(inc), True
    )
    (c,) = rank_root_causes(T, [counter], GRID, window_ms=30 * STEP, baseline_ms=120 * STEP)
    assert c.onset_ms == 210 * STEP and c.sigma > 6 and np.nanmax(c.values) > 150


def test_bad_input() -> None:
    s = [si("a", "x", noise(1, 1, 0.1))]
    with pytest.raises(BadInputError, match="baseline"):
        rank_root_causes(3 * STEP, s, GRID, window_ms=STEP, baseline_ms=STEP)
    with pytest.raises(BadInputError, match="grid"):
        rank_root_causes(T, s, Grid(0, STEP, N + 1))
    with pytest.raises(BadInputError):
        rank_root_causes(T, s, GRID, window_ms=0)


values = st.lists(
    st.one_of(st.floats(-1e12, 1e12), st.just(float("nan")), st.just(0.0)),
    min_size=N,
    max_size=N,
)


@settings(max_examples=40, deadline=None)
@given(st.lists(values, min_size=1, max_size=5), st.integers(100, N - 1))
def test_any_input_gives_well_formed_causes(rows: list[list[float]], t: int) -> None:
    series = [si(f"s{i}", f"h{i}", np.asarray(r)) for i, r in enumerate(rows)]
    series.append(si("constant", "c", np.full(N, 7.0)))
    causes = rank_root_causes(t * STEP, series, GRID, window_ms=40 * STEP, baseline_ms=50 * STEP)
    assert len({c.index for c in causes}) == len(causes)
    assert all(dict(c.labels)["__name__"] != "constant" for c in causes)
    for c in causes:
        assert np.isfinite(c.score) and np.isfinite(c.sigma) and abs(c.sigma) >= 6
        assert c.shape in ("shift", "spike", "ramp", "saturation") and c.explanation
    assert [c.score for c in causes] == sorted((c.score for c in causes), reverse=True)
