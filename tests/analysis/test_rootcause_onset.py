"""Back-dating: a ramp began where the line of its rise meets its baseline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.onset import backdated
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set, metric_name

STEP = 60_000
N = 240
GRID = Grid(0, STEP, N)
T = 220 * STEP  # the incident time
KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}


def test_a_noiseless_ramp_is_dated_where_it_left_zero() -> None:
    """0.4 sigma per step from index 5: the threshold of 3 sigma is crossed at 13, the line of
    the rise meets zero at 5."""
    z = np.zeros(30)
    z[5:] = 0.4 * np.arange(25)
    assert backdated(z, 13, 29, 0.8) == 5


def test_a_step_keeps_its_threshold_date() -> None:
    z = np.zeros(30)
    z[10:] = 8.0
    assert backdated(z, 10, 20, 0.8) == 10


def test_never_earlier_than_the_rise_took_nor_later_than_the_threshold() -> None:
    z = np.zeros(30)
    z[15:20] = 2.0
    z[20:] = 6.0 + 0.5 * np.arange(10)  # meets zero at 8; 5 steps to 80 % of the peak
    assert backdated(z, 20, 29, 0.8) == 15


def test_only_as_far_back_as_the_data_shows_the_rise() -> None:
    """The line meets zero at 18.5, but the step before the threshold is at the baseline."""
    z = np.zeros(30)
    z[20:] = 3.0 + 2.0 * np.arange(10)
    assert backdated(z, 20, 29, 0.8) == 20
    z = np.zeros(30)
    z[10:] = 1.0 * np.arange(20) ** 2  # steepening: the line meets zero after its first step
    assert backdated(z, 12, 29, 0.8) <= 12


def _leak_and_step(seed: int) -> list[SeriesInput]:
    """Memory leaks from step 195 at 0.3 sigma per step; the latency of the same instance steps
    up at 202, before the leak is 3 sigma out of its noise."""
    rng = np.random.default_rng(seed)
    mem = 1000.0 + rng.normal(0, 1.0, N)
    mem[195:] += 0.3 * np.arange(1, N - 194)
    lat = 0.2 + rng.normal(0, 0.002, N)
    lat[202:] += 0.05
    labels = [{"__name__": n, "instance": "cart-1"} for n in ("memory_bytes", "latency_seconds")]
    return [SeriesInput(label_set(d), v) for d, v in zip(labels, (mem, lat), strict=True)]


def _onsets(series: list[SeriesInput], backdate: float) -> dict[str, int]:
    p = replace(rootcause.RootCauseParams(), backdate=backdate)
    causes = rank_root_causes(T, series, GRID, params=p, **KW)  # type: ignore[arg-type]
    return {metric_name(c.labels): c.onset_ms // STEP for c in causes}


def test_a_leak_is_dated_before_the_symptom_it_preceded() -> None:
    """At the threshold the leak is dated after the latency's step; back-dated, within a few
    steps of its true start (195) and before the step."""
    series = _leak_and_step(0)
    off = _onsets(series, 0.0)
    assert off["memory_bytes"] > off["latency_seconds"] == 202
    on = _onsets(series, 0.8)
    assert abs(on["memory_bytes"] - 195) <= 2
    assert on["latency_seconds"] == 202
