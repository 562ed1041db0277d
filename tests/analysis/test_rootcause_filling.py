"""A resource still filling at the alert is a suspect beside the top change, even unlinked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.filling import filling_suspects, machine_wide, second_place
from perfintel.analysis.signals import SeriesInput
from perfintel.model import label_set
from tests.analysis.rootcause_cases import GRID, STEP, N, T, noise, si

KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}


def _sessions_leak(hold: bool = True) -> list[SeriesInput]:
    """A database's sessions grow from 20 minutes before the alert (a series whose role the
    name does not tell); 17 minutes later the latency and errors of four services that use it
    jump, by far more sigmas, with nothing in the baseline tying them to the database."""
    sessions = noise(1, 40.0, 1.0)
    sessions[200:] += 0.8 * np.arange(1, N - 199)
    if not hold:  # drained again before the alert
        sessions[212:] = noise(9, 40.0, 1.0)[212:]
    out = [si("pg_stat_activity_count", "db-0", sessions)]
    for k in range(4):
        latency = noise(10 + k, 0.1, 0.002)
        latency[217:] += 0.1 + 0.01 * k
        errors = noise(20 + k, 0.001, 0.0001)
        errors[218:] += 0.05
        out += [si("latency_seconds", f"svc-{k}", latency)]
        out += [si("http_errors_ratio", f"svc-{k}", errors)]
    return out


def _rank_of_sessions(series: list[SeriesInput], filling: float) -> int:
    p = replace(rootcause.RootCauseParams(), filling=filling)
    causes = rank_root_causes(T, series, GRID, params=p, **KW)  # type: ignore[arg-type]
    return [c.labels for c in causes].index(series[0].labels) + 1


def test_a_resource_still_filling_at_the_alert_ranks_second_even_unlinked() -> None:
    series = _sessions_leak()
    causes = rank_root_causes(T, series, GRID, **KW)  # type: ignore[arg-type]
    sessions = next(c for c in causes if c.labels == series[0].labels)
    assert sessions.followers == ()  # nothing ties the symptoms to it
    assert _rank_of_sessions(series, 0.0) > 3
    assert _rank_of_sessions(series, 0.5) == 2


def test_a_workloads_own_stock_moves_before_the_machines_that_sums_it() -> None:
    """The machine's available memory falls with the sessions (held at its floor: fuller),
    yet the workload's own stock is the one moved."""
    series = _sessions_leak()
    free = noise(30, 8e9, 1e7)
    free[200:] -= 5e7 * np.minimum(np.arange(1, N - 199), 18)
    series.append(SeriesInput(label_set({"__name__": "node_memory_MemAvailable_bytes"}), free))
    assert machine_wide(series[-1].labels)
    assert not machine_wide(series[0].labels)
    assert _rank_of_sessions(series, 0.5) == 2


def test_a_resource_that_drained_before_the_alert_is_not_moved() -> None:
    series = _sessions_leak(hold=False)
    assert _rank_of_sessions(series, 0.5) == _rank_of_sessions(series, 0.0)


def test_filling_suspects_needs_a_gradual_held_stock_before_the_symptoms() -> None:
    w = 40
    ramp = np.clip(np.arange(w) - 5, 0, None) * 2.0  # from step 6, still growing
    step = np.where(np.arange(w) >= 6, 30.0, 0.0)  # a step: not gradual
    late = np.where(np.arange(w) >= 35, 30.0, 0.0)  # the symptom, at step 35
    z = np.stack([ramp, step, late])
    peak = z.max(axis=1)
    onset = np.array([6, 6, 35])
    role = np.array([-1, rootcause.ROLE_ORDER["resource"], rootcause.ROLE_ORDER["errors"]])
    got = filling_suspects(
        z, peak, onset, np.ones(3), role, np.ones(3, bool), np.ones(3, bool), 36, 5, 3.0, 0.5
    )
    assert (got > 0).tolist() == [True, False, False]
    assert 0.9 < got[0] < 1.0  # how full it is at the incident time: 31 of its 34


def test_second_place_keeps_the_first_and_moves_one_suspect() -> None:
    scores = {0: 5.0, 1: 4.0, 2: 4.0, 3: 3.0, 4: 1.0, 5: 0.5}
    tie = dict.fromkeys(scores, 0)
    out = second_place(scores, {4: 0.9, 5: 1.0}, tie)  # the fuller one moves
    order = sorted(out, key=lambda i: (-out[i], tie[i], i))
    assert order == [0, 5, 1, 2, 3, 4]
    assert second_place(scores, {2: 1.0}, tie) == scores  # already in the first three
