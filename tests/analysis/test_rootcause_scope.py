"""The incident's scope: a change that moved no symptom is another event (``unmoved``)."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause_scope import moves_symptoms, unmoved
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set, metric_name

STEP = 60_000
N = 240
GRID = Grid(0, STEP, N)
T = 220 * STEP  # the incident time


def si(name: str, instance: str, values: np.ndarray, service: str) -> SeriesInput:
    labels = {"__name__": name, "instance": instance, "service": service}
    return SeriesInput(label_set(labels), np.asarray(values, dtype=float))


def noise(seed: int, level: float, sd: float) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, N)


def _case(memory: str, symptom: bool = True) -> list[SeriesInput]:
    """checkout's CPU steps up ~12σ at step 212 and (``symptom``) its latency ~15σ a step
    later (the incident, at 220); a batch job's memory, on another host, jumps ~100σ at step
    205 and stays up (``memory="step"``), or grows steadily from step 214 (``"ramp"``: a
    leak), moving nothing."""
    cpu = noise(31, 0.4, 0.01)
    cpu[212:] += 0.12
    latency = noise(32, 0.10, 0.002)
    if symptom:
        latency[213:] += 0.03
    mem = noise(33, 2.0, 0.01)
    if memory == "step":
        mem[205:] += 1.0
    else:
        mem[214:] += 0.1 * np.arange(N - 214)
    return [
        si("cpu_utilisation", "api-1", cpu, "checkout"),
        si("latency_seconds", "api-1", latency, "checkout"),
        si("memory_bytes", "batch-1", mem, "batch"),
    ]


def _top(series: list[SeriesInput], level: float) -> str:
    causes = rank_root_causes(
        T,
        series,
        GRID,
        window_ms=30 * STEP,
        baseline_ms=150 * STEP,
        params=RootCauseParams(unmoved=level),
    )
    return metric_name(causes[0].labels)


def test_a_change_that_moved_no_symptom_ranks_below_one_that_did() -> None:
    # off: the batch job's large memory step outranks the CPU step that moved the latency
    assert _top(_case("step"), 0.0) == "memory_bytes"
    # on: the latency the incident is about never moved with it, so it is another event
    for level in (3.0, 100.0):
        assert _top(_case("step"), level) == "cpu_utilisation"


def test_a_resource_still_growing_is_not_lowered() -> None:
    # a leak may not have reached the limit at which it moves anything yet
    assert _top(_case("ramp"), 100.0) == "memory_bytes"


def test_without_a_symptom_change_nothing_is_lowered() -> None:
    assert _top(_case("step", symptom=False), 100.0) == "memory_bytes"


def test_unmoved_keeps_what_moved_a_symptom_and_ramps() -> None:
    explained = {0: [], 1: [0], 2: [], 3: [], 4: [1]}  # 0 -> 1 -> 4 (a symptom)
    moves = moves_symptoms([4], explained)
    assert moves == {0, 1, 4}
    shapes = {0: "shift", 1: "shift", 2: "shift", 3: "ramp", 4: "spike"}
    assert unmoved([0, 1, 2, 3, 4], moves, shapes) == {2}
    assert unmoved([0, 1, 2, 3, 4], set(), shapes) == set()
