"""Orphan symptoms: the quorum of a shared explainer counted before each orphan's explainer is
chosen (``orphan_first``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.links import OrphanRule, orphan_links
from perfintel.analysis.rootcause.pairs import Pairs
from perfintel.analysis.signals import SeriesInput
from tests.analysis.rootcause_cases import GRID, STEP, T, noise, si

KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}

LATENCY, RESOURCE = rootcause.ROLE_ORDER["latency"], rootcause.ROLE_ORDER["resource"]


def _a_chance_change_and_a_shared_dependency(
    rule: OrphanRule,
) -> list[tuple[int, int, float]]:
    """0: another service's CPU, the earliest change, whose course only orphan 2 follows;
    1: a database's CPU, later, whose course orphans 2 and 3 (two callers' latency) follow."""
    role = np.array([RESOURCE, RESOURCE, LATENCY, LATENCY])
    size = np.array([20.0, 15.0, 90.0, 80.0])
    onset = np.array([5, 8, 10, 10])
    e = np.arange(4)
    same = e[:, None] == e[None, :]
    first = onset[:, None] < onset[None, :]
    pairs = Pairs(first, same, np.ones((4, 4), bool), same)
    # the path correlations of the pairs: 0 follows 2 closely but not 3; 1 both
    corr = np.zeros((4, 4))
    corr[0, 2], corr[1, 2], corr[1, 3] = 0.97, 0.95, 0.96

    def path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return corr[a, b]

    linked = np.zeros((4, 4), dtype=bool)
    return orphan_links(role, size, onset, linked, pairs, path, rule)


def test_the_quorum_is_counted_before_the_earliest_explainer_is_chosen() -> None:
    after = OrphanRule(mode=3, corr=0.9, gain=0.0, roles=0, quorum=2)
    # counted after the choice: orphan 2 goes to the earliest (0), which reaches one orphan
    # and is dropped, and the database then reaches only orphan 3: no link survives
    assert orphan_links_of(after) == []
    before = replace(after, quorum_first=True)
    # counted first: 0 reaches one orphan and may explain none; the database reaches two
    assert orphan_links_of(before) == [(1, 2), (1, 3)]


def test_quorum_first_changes_nothing_without_a_quorum() -> None:
    one = OrphanRule(mode=3, corr=0.9, gain=0.0, roles=0, quorum=1)
    assert orphan_links_of(one) == orphan_links_of(replace(one, quorum_first=True))
    assert orphan_links_of(one) == [(0, 2), (1, 3)]


def orphan_links_of(rule: OrphanRule) -> list[tuple[int, int]]:
    return [(i, j) for i, j, _ in _a_chance_change_and_a_shared_dependency(rule)]


def _two_callers_of_a_database_and_an_earlier_cpu() -> list[SeriesInput]:
    """Another service's CPU steps up at 206 (about 6σ), a database's CPU at 208 (16σ); the
    p99 latency of its two callers steps up at 211 and 213 (far more sigmas, queueing
    amplifies). The earlier CPU began more than five minutes (the propagation bound) before
    the second caller's latency, so only the database may explain both callers; less than half
    the database's sigmas, it cannot explain the database (the gain bound)."""
    other = noise(1, 0.5, 0.02)
    other[206:] += 0.09
    database = noise(2, 0.5, 0.02)
    database[208:] += 0.3
    out = [
        si("container_cpu_usage_seconds_total", "search-0", other, service="search"),
        si("container_cpu_usage_seconds_total", "postgres-0", database, service="postgres"),
    ]
    for k, at in enumerate((211, 213)):
        latency = noise(10 + k, 0.1, 0.002)
        latency[at:] += 0.2 + 0.05 * k
        out.append(si("http_request_duration_seconds", f"svc-{k}", latency, service=f"svc-{k}"))
    return out


def _ranked(series: list[SeriesInput], orphan_first: float) -> list[rootcause.Cause]:
    p = replace(rootcause.RootCauseParams(), orphan_first=orphan_first)
    return rank_root_causes(T, series, GRID, None, params=p, **KW)


def test_a_shared_database_explains_callers_whose_earliest_explainer_reaches_one() -> None:
    series = _two_callers_of_a_database_and_an_earlier_cpu()
    off = _ranked(series, 0.0)
    # the first caller's orphan link goes to the earlier CPU, which then fails the quorum: the
    # callers' latency stands unexplained and ranks first, the database's CPU third
    assert off[0].labels == series[2].labels
    assert [c.labels for c in off].index(series[1].labels) == 2
    on = _ranked(series, 1.0)
    assert on[0].labels == series[1].labels
    assert [f.index for f in on[0].followers] == [2, 3]
