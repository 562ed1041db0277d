"""A shared stock that filled explains its callers' symptoms when they fail together."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.pairs import Pairs
from perfintel.analysis.rootcause.shared import shared_links
from perfintel.analysis.signals import SeriesInput
from tests.analysis.rootcause_cases import GRID, STEP, N, T, noise, si

KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
LATENCY, ERRORS = rootcause.ROLE_ORDER["latency"], rootcause.ROLE_ORDER["errors"]


def _callers_of_a_full_database(
    starts: tuple[int, ...] = (217, 217, 218, 218),
) -> list[SeriesInput]:
    """A database's sessions grow from 20 minutes before the alert (a role the name does not
    tell) and hold; the latency and errors of the services that use it jump at ``starts``, by
    far more sigmas, with nothing in the baseline tying them to the database."""
    sessions = noise(1, 40.0, 1.0)
    sessions[200:] += 0.8 * np.minimum(np.arange(1, N - 199), 15)
    out = [si("pg_stat_activity_count", "db-0", sessions)]
    for k, s in enumerate(starts):
        latency = noise(10 + k, 0.1, 0.002)
        latency[s:] += 0.1 + 0.01 * k
        errors = noise(20 + k, 0.001, 0.0001)
        errors[s + 1 :] += 0.05
        out += [si("latency_seconds", f"svc-{k}", latency)]
        out += [si("http_errors_ratio", f"svc-{k}", errors)]
    return out


def _ranked(series: list[SeriesInput], shared: float, **more: float) -> list[rootcause.Cause]:
    # filling off: on, it moves the unlinked sessions to second place by another rule
    p = replace(rootcause.RootCauseParams(), shared=shared, filling=0.0, **more)
    return rank_root_causes(T, series, GRID, params=p, **KW)  # type: ignore[arg-type]


def test_a_shared_stock_explains_the_callers_that_failed_together() -> None:
    series = _callers_of_a_full_database()
    off = [c.labels for c in _ranked(series, 0.0)]
    assert off.index(series[0].labels) > 2  # unlinked, behind the symptoms
    on = _ranked(series, 0.65)
    assert on[0].labels == series[0].labels
    assert len(on[0].followers) >= 4  # the callers' symptoms


def test_one_callers_symptoms_are_no_group() -> None:
    series = _callers_of_a_full_database(starts=(217,))
    assert [c.labels for c in _ranked(series, 0.65)] == [c.labels for c in _ranked(series, 0.0)]


def _pairs(entity: list[int], allowed: bool = True) -> Pairs:
    e = np.array(entity)
    same = e[:, None] == e[None, :]
    k = e.size
    full = np.full((k, k), allowed)
    return Pairs(np.ones((k, k), bool), same, full, same)


def test_shared_links_needs_a_full_stock_and_symptoms_begun_within_a_hop() -> None:
    w = 60
    t = np.arange(w)
    fill = np.clip(t - 5, 0, 20) * 2.0  # from step 6 to its peak 40 at step 25, then holds
    step = np.where(t >= 6, 40.0, 0.0)  # a step: not gradual
    lat = [np.where(t >= s, 30.0, 0.0) for s in (40, 41, 56)]
    z = np.stack([fill, step, *lat])
    role = np.array([-1, -1, LATENCY, ERRORS, LATENCY])
    onset = np.array([6, 6, 40, 41, 56])
    entity = [0, 1, 2, 3, 4]
    none = np.zeros((5, 5), bool)
    args = (z, z.max(axis=1), onset, np.ones(5), role, np.ones(5, bool))
    link = shared_links(*args, none, _pairs(entity), 5, 3.0, 0.65)
    # the fill explains the two callers that began together, not the one 15 steps later;
    # the step is not gradual
    assert np.flatnonzero(link[0]).tolist() == [2, 3]
    assert not link[1:].any()
    # one entity is no group; a graph that forbids the path links nothing
    assert not shared_links(*args, none, _pairs([0, 1, 2, 2, 4]), 5, 3.0, 0.65).any()
    assert not shared_links(*args, none, _pairs(entity, allowed=False), 5, 3.0, 0.65).any()
    # a counter (a rate) does not fill
    counter = (z, z.max(axis=1), onset, np.ones(5), role, np.arange(5) != 0)
    assert not shared_links(*counter, none, _pairs(entity), 5, 3.0, 0.65).any()
    # a symptom its own workload explains is no orphan
    own = _pairs([0, 1, 2, 2, 3])
    explained = none.copy()
    explained[2, 3] = True  # latency explains the errors of its own service
    link = shared_links(*args, explained, own, 5, 3.0, 0.65)
    assert not link[0, 3]


def test_a_small_stock_explains_no_group() -> None:
    """``shared_size``: the sessions peak near 14 sigmas; a floor of 3 x ``min_sigma`` (15)
    leaves them unlinked behind the symptoms, a floor of 2 x (10) does not."""
    series = _callers_of_a_full_database()
    assert _ranked(series, 0.65, shared_size=2.0)[0].labels == series[0].labels
    big = [c.labels for c in _ranked(series, 0.65, shared_size=3.0)]
    assert big == [c.labels for c in _ranked(series, 0.0)]


def test_a_group_beside_other_unexplained_failures_is_no_group() -> None:
    """``shared_cover``: two more services fail 12 minutes before the callers, nothing explains
    them (they rank first); the callers' group spans 4 of the 6 entities with an orphan symptom
    (0.67): the sessions explain it at a cover of 0.5, nothing at 0.8."""
    series = _callers_of_a_full_database()
    for k in (8, 9):
        latency = noise(30 + k, 0.1, 0.002)
        latency[205:] += 0.1
        series.append(si("latency_seconds", f"svc-{k}", latency))

    def followers(causes: list[rootcause.Cause]) -> int:
        return next(len(c.followers) for c in causes if c.labels == series[0].labels)

    assert followers(_ranked(series, 0.0)) == 0
    assert followers(_ranked(series, 0.65, shared_cover=0.5)) >= 4  # the callers
    most = _ranked(series, 0.65, shared_cover=0.8)
    assert followers(most) == 0
    assert [c.labels for c in most] == [c.labels for c in _ranked(series, 0.0)]


def test_shared_links_restrictions_size_and_cover() -> None:
    """The fill peaks at 40: a floor of 41 links nothing; its group (2 entities of the 3 with an
    orphan symptom) passes a cover of 0.6, not 0.7."""
    w = 60
    t = np.arange(w)
    fill = np.clip(t - 5, 0, 20) * 2.0
    lat = [np.where(t >= s, 30.0, 0.0) for s in (40, 41, 56)]
    z = np.stack([fill, *lat])
    role = np.array([-1, LATENCY, ERRORS, LATENCY])
    args = (z, z.max(axis=1), np.array([6, 40, 41, 56]), np.ones(4), role, np.ones(4, bool))
    none, pairs = np.zeros((4, 4), bool), _pairs([0, 1, 2, 3])
    base = (*args, none, pairs, 5, 3.0, 0.65)
    assert np.flatnonzero(shared_links(*base, 40.0)[0]).tolist() == [1, 2]
    assert not shared_links(*base, 41.0).any()
    assert np.flatnonzero(shared_links(*base, 0.0, 0.6)[0]).tolist() == [1, 2]
    assert not shared_links(*base, 0.0, 0.7).any()
    # the third orphan of the group's own entity: 2 entities of 2, the cover holds at 1.0
    same = _pairs([0, 1, 2, 2])
    assert shared_links(*args, none, same, 5, 3.0, 0.65, 0.0, 1.0)[0, 1:3].all()
