"""A series born inside the baseline is measured on what was seen of it (window.born_filled)."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause.window import Window, born_filled, first_samples
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.bench.asked import perturbed
from perfintel.bench.incidents import VARIANT_PROFILE, generate_incident
from perfintel.model import label_set


def test_born_filled_mirrors_the_first_values_over_the_unborn_baseline_only() -> None:
    w = Window(asked=40, start=30, end=41, base=10)
    gauge = np.r_[np.full(14, np.nan), np.arange(14.0, 41.0)]
    counter = np.r_[np.full(14, np.nan), np.arange(14.0, 41.0) ** 2]
    old = np.r_[np.arange(41.0)]
    series = [
        SeriesInput(label_set({"__name__": n}), v, c)
        for n, v, c in (("g", gauge, False), ("c_total", counter, True), ("o", old, False))
    ]
    x = np.vstack([np.r_[np.full(14, 14.0), gauge[14:]], np.ones(41), old])
    out = born_filled(x, series, w, first_samples(series))
    assert np.array_equal(out[0, 10:14], [17.0, 16.0, 15.0, 14.0])  # mirrored about birth
    assert np.array_equal(out[0, :10], x[0, :10]) and np.array_equal(out[0, 14:], x[0, 14:])
    assert np.array_equal(out[2], x[2])  # sampled from the start: untouched
    # born before the baseline, or past its half (no candidate): nothing filled
    assert born_filled(x, series, Window(40, 30, 41, 20), first_samples(series)) is x
    assert born_filled(x, series, Window(40, 20, 41, 0), first_samples(series)) is x


@pytest.mark.parametrize("seed", [19, 36, 48])
def test_series_born_inside_the_baseline_do_not_outrank_the_root(seed: int) -> None:
    # background series born 10-40 % into the baseline (carried back from their first value,
    # a third of a baseline of one value read their noise as tens of σ and outranked the root)
    inc = perturbed(generate_incident(seed, VARIANT_PROFILE), "late")
    causes = rank_root_causes(
        inc.time_ms,
        inc.series,
        Grid(inc.start_ms, inc.step_ms, len(inc.series[0].values)),
        window_ms=30 * 60_000,
        baseline_ms=180 * 60_000,
    )
    assert causes[0].index == inc.root
