"""Work before waiting: a CPU that rose with other entities' symptoms comes before them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import DependencyGraph, rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.pairs import Pairs
from perfintel.analysis.rootcause.work import is_work, work_ties
from perfintel.analysis.signals import SeriesInput
from perfintel.model import LabelSet, label_set
from tests.analysis.rootcause_cases import GRID, STEP, T, noise, si

KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
LATENCY, ERRORS = rootcause.ROLE_ORDER["latency"], rootcause.ROLE_ORDER["errors"]
RESOURCE = rootcause.ROLE_ORDER["resource"]


def _database_cpu_and_its_callers(callers: int) -> list[SeriesInput]:
    """A database's CPU steps up at 214 (33σ) and the p99 latency of ``callers`` services that
    use it steps up in the same minute, by 3-5 times more sigmas (queueing amplifies)."""
    cpu = noise(1, 0.5, 0.02)
    cpu[214:] += 0.6
    out = [si("container_cpu_usage_seconds_total", "postgres-0", cpu, service="postgres")]
    for k in range(callers):
        latency = noise(10 + k, 0.1, 0.002)
        latency[214:] += 0.2 + 0.05 * k
        out.append(si("http_request_duration_seconds", f"svc-{k}", latency, service=f"svc-{k}"))
    return out


def _ranked(
    series: list[SeriesInput], work_first: float, graph: DependencyGraph | None = None
) -> list[rootcause.Cause]:
    p = replace(rootcause.RootCauseParams(), work_first=work_first)
    return rank_root_causes(T, series, GRID, graph, params=p, **KW)


def test_a_shared_cpu_comes_before_the_callers_latency_that_rose_with_it() -> None:
    series = _database_cpu_and_its_callers(3)
    off = _ranked(series, 0.0)
    assert off[0].labels != series[0].labels  # the largest latency first, the CPU last
    assert [c.labels for c in off].index(series[0].labels) == 3
    for work_first in (1.0, 2.0):
        on = _ranked(series, work_first)
        assert on[0].labels == series[0].labels
        assert len(on[0].followers) == 3  # the three callers' latency


def test_one_callers_latency_is_no_quorum_of_two() -> None:
    series = _database_cpu_and_its_callers(1)
    off = [c.labels for c in _ranked(series, 0.0)]
    assert [c.labels for c in _ranked(series, 2.0)] == off


def test_a_declared_graph_still_decides() -> None:
    # the graph says the "database" calls the services: a fault in them reaches it, not back
    series = _database_cpu_and_its_callers(3)
    graph = DependencyGraph.from_edges([("postgres", f"svc-{k}") for k in range(3)])
    on = _ranked(series, 1.0, graph)
    assert on[0].labels != series[0].labels


def test_what_counts_as_work() -> None:
    def labels(name: str, **extra: str) -> LabelSet:
        return label_set({"__name__": name, "pod": "db-0", **extra})

    assert is_work(labels("container_cpu_usage_seconds_total"))
    assert is_work(labels("process_cpu_seconds_total"))
    assert not is_work(labels("node_cpu_idle_ratio"))  # what is left
    assert not is_work(labels("cpu_threads_in_use"))  # an occupancy
    assert not is_work(labels("process_open_fds"))
    assert not is_work(labels("container_memory_working_set_bytes"))
    assert not is_work(labels("http_request_duration_seconds"))


def test_work_ties_orders_only_a_rising_cpu_against_other_entities_symptoms() -> None:
    # 0: CPU of entity 0; 1, 2: latency and errors of entities 1, 2 in the same step; 3: latency
    # of entity 0 itself; 4: latency of entity 3 two steps later; 5: a CPU of entity 4 that fell
    onset = np.array([10, 10, 10, 10, 12, 10])
    tol = np.full(6, 0.5)
    peak = np.array([30.0, 90.0, 60.0, 80.0, 70.0, -20.0])
    role = np.array([RESOURCE, LATENCY, ERRORS, LATENCY, LATENCY, RESOURCE])
    work = np.array([True, False, False, False, False, True])
    e = np.array([0, 1, 2, 0, 3, 4])
    same = e[:, None] == e[None, :]
    pairs = Pairs(np.ones((6, 6), bool), same, np.ones((6, 6), bool), same)
    none = np.zeros((6, 6), bool)
    tie = work_ties(onset, tol, peak, role, work, pairs, none, 1)
    assert np.argwhere(tie).tolist() == [[0, 1], [0, 2]]
    assert work_ties(onset, tol, peak, role, work, pairs, none, 2).sum() == 2  # two entities
    assert not work_ties(onset, tol, peak, role, work, pairs, none, 3).any()
    declared = none.copy()
    declared[0, 1] = declared[1, 0] = True  # the graph orders that pair
    assert np.argwhere(work_ties(onset, tol, peak, role, work, pairs, declared, 1)).tolist() == [
        [0, 2]
    ]
    # entity 1 is the machine entity 0 runs on: the machine's order decides
    hosts = same.copy()
    hosts[1, 0] = True
    machine = Pairs(np.ones((6, 6), bool), hosts, np.ones((6, 6), bool), same)
    assert np.argwhere(work_ties(onset, tol, peak, role, work, machine, none, 1)).tolist() == [
        [0, 2]
    ]
