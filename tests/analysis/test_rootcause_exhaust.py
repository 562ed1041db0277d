"""Exhaustion: a resource that filled slowly explains what failed when it was full."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.exhaust import exhaustion_links
from perfintel.analysis.signals import SeriesInput
from perfintel.model import metric_name
from tests.analysis.rootcause_cases import GRID, STEP, T, noise, si

KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}


def _filled_then_failed() -> list[SeriesInput]:
    """Descriptors grow for 13 minutes, then hold at the limit; 8 minutes later the errors of
    the same instance jump, by far more sigmas."""
    fds = noise(1, 200.0, 2.0)
    fds[193:206] += 60.0 * np.arange(1, 14)
    fds[206:] += 780.0
    errors = noise(2, 0.001, 0.0001)
    errors[214:] += 0.2
    return [si("http_errors_ratio", "cart-1", errors), si("open_fds", "cart-1", fds)]


def _ranked(series: list[SeriesInput], exhaustion: float) -> list[str]:
    p = replace(rootcause.RootCauseParams(), exhaustion=exhaustion)
    causes = rank_root_causes(T, series, GRID, params=p, **KW)  # type: ignore[arg-type]
    return [metric_name(c.labels) for c in causes]


def test_a_resource_that_filled_slowly_and_held_explains_the_later_failures() -> None:
    """Not a ramp at the end (it held at its limit), so accumulation does not apply, and
    begun more than a hop before the errors, so no propagation link does."""
    series = _filled_then_failed()
    causes = rank_root_causes(T, series, GRID, **KW)  # type: ignore[arg-type]
    by = {metric_name(c.labels): c for c in causes}
    # not a ramp (it stopped growing at its limit), and begun more than a hop before the errors
    assert by["open_fds"].shape != "ramp"
    assert by["http_errors_ratio"].onset_ms - by["open_fds"].onset_ms > 5 * STEP
    assert abs(by["http_errors_ratio"].sigma) > abs(by["open_fds"].sigma)
    assert _ranked(series, 0.0) == ["http_errors_ratio", "open_fds"]
    assert _ranked(series, 0.65) == ["open_fds", "http_errors_ratio"]


def test_a_step_or_a_change_that_came_back_exhausts_nothing() -> None:
    """A step is full at once (a hop's delay decides it); a growth that fell back before the
    symptom began no longer holds anything."""
    z = np.zeros((2, 30))
    z[0, 2:] = 20.0  # a step: full at once
    z[1, 20:] = 50.0  # a symptom 18 steps later
    role = np.array([rootcause.ROLE_ORDER["resource"], rootcause.ROLE_ORDER["errors"]])
    same = np.ones((2, 2), dtype=bool)

    def links(z: np.ndarray, at: int = 20) -> np.ndarray:
        onset = np.array([int(np.argmax(z[0] > 3)), at])
        tol = np.array([0.5, 0.5])
        return exhaustion_links(z, z.max(axis=1), onset, tol, role, same, same, 5, 3.0, 0.65)

    assert not links(z)[0, 1]
    z[0, 2:14] = np.linspace(2, 20, 12)  # filled over 12 steps: exhaustion
    assert links(z)[0, 1]
    assert not links(z, at=8)[0, 1]  # it had not filled most of the way yet (59 %)
    z[0, 16:19] = 0.0  # ... but it came back before the errors began
    assert not links(z)[0, 1]
