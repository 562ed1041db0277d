"""What belongs to an incident: relief (a change for the better) made nothing worse."""

from __future__ import annotations

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause.scope import moves_symptoms, relieved
from perfintel.analysis.signals import SeriesInput
from perfintel.model import LabelSet, label_set, metric_name
from tests.analysis.rootcause_cases import GRID, STEP, T, noise, si


def _case(memory: str) -> list[SeriesInput]:
    """checkout's CPU steps up ~12σ at step 212 and its latency ~15σ a step later (the
    incident, at 220); a batch job's gauge ``memory`` (``memory_bytes``: in use;
    ``memory_free_bytes``: what is left) falls ~100σ at step 205 and stays down."""
    cpu = noise(31, 0.4, 0.01)
    cpu[212:] += 0.12
    latency = noise(32, 0.10, 0.002)
    latency[213:] += 0.03
    mem = noise(33, 2.0, 0.01)
    mem[205:] -= 1.0
    return [
        si("cpu_utilisation", "api-1", cpu, "checkout"),
        si("latency_seconds", "api-1", latency, "checkout"),
        si(memory, "batch-1", mem, "batch"),
    ]


def _top(series: list[SeriesInput], level: float) -> str:
    causes = rank_root_causes(
        T,
        series,
        GRID,
        window_ms=30 * STEP,
        baseline_ms=150 * STEP,
        params=RootCauseParams(relief=level),
    )
    return metric_name(causes[0].labels)


def test_a_resource_freed_ranks_below_the_change_that_slowed_the_work() -> None:
    # off: the batch job's large fall in memory in use outranks the CPU step that moved latency
    assert _top(_case("memory_bytes"), 0.0) == "memory_bytes"
    # on: memory freed made nothing worse (a restart, less work): it is not the cause
    for level in (1.0, 3.0):
        assert _top(_case("memory_bytes"), level) == "cpu_utilisation"


def test_a_fall_in_what_is_left_is_pressure_not_relief() -> None:
    # the same fall in free memory is memory running out: not lowered
    assert _top(_case("memory_free_bytes"), 3.0) == "memory_free_bytes"


def test_relieved_reads_the_direction_of_harm_from_the_role() -> None:
    def labels(name: str) -> LabelSet:
        return label_set({"__name__": name, "instance": "a"})

    for name in ("requests_total", "cpu_seconds_total", "latency_seconds", "errors_total"):
        assert relieved(labels(name), -8.0)
        assert not relieved(labels(name), 8.0)
    for name in ("node_memory_MemAvailable_bytes", "cpu_idle_seconds_total"):
        assert relieved(labels(name), 8.0)
        assert not relieved(labels(name), -8.0)
    # a series whose role the name does not tell has no direction
    assert not relieved(labels("node_timex_offset_seconds"), -8.0)


def test_moves_symptoms_walks_back_from_the_symptoms() -> None:
    explained = {0: [], 1: [0], 2: [], 3: [], 4: [1]}  # 0 -> 1 -> 4 (a symptom)
    assert moves_symptoms([4], explained) == {0, 1, 4}
