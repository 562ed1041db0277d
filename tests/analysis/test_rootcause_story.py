"""The window opened back to the symptoms' story (``story``): asked at the end of the data."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause.parameters import RootCauseParams
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

MIN = 60_000
N = 4 * 60  # 4 hours of minutes
END = N - 1


def _ar1(rng: np.random.Generator, phi: float, sd: float) -> np.ndarray:
    return np.asarray(lfilter([1.0], [1.0, -phi], rng.normal(0, sd, N)))


def _pool_full_before_the_window(seed: int) -> list[SeriesInput]:
    """A pool fills 33 minutes before the end (3 before a 30-minute window asked at the end),
    its latency and its caller's errors rise 2 minutes later; another service's memory grows
    over the last 12 minutes; five quiet CPUs."""
    rng = np.random.default_rng(seed)
    pool = 20 + _ar1(rng, 0.5, 0.5)
    pool[END - 33 :] += 8
    drive = np.zeros(N)
    drive[END - 31 :] = 1.0
    latency = 0.2 + 0.01 * _ar1(rng, 0.5, 1.0) + 0.3 * drive
    errors = 1 + _ar1(rng, 0.5, 0.2) + 5 * drive
    memory = 5e8 * (1 + 0.01 * _ar1(rng, 0.9, 1.0))
    memory[END - 12 :] *= np.linspace(1, 1.5, 13)
    rows = [
        ("db_connections_in_use", "db", pool),
        ("latency_seconds", "db", latency),
        ("errors_total", "web", errors),
        ("memory_bytes", "s0", memory),
    ]
    rows += [("cpu_usage", f"s{k}", 0.5 + _ar1(rng, 0.7, 0.02)) for k in range(1, 6)]
    return [SeriesInput(label_set({"__name__": m, "service": s}), v) for m, s, v in rows]


def _top(series: list[SeriesInput], at: int, story: float) -> list[str]:
    causes = rank_root_causes(
        at * MIN, series, Grid(0, MIN, N), params=RootCauseParams(story=story)
    )
    return [dict(c.labels)["__name__"] for c in causes]


def test_asked_at_the_end_the_window_opens_back_to_the_root_and_not_at_the_alert() -> None:
    for seed in range(4):
        series = _pool_full_before_the_window(seed)
        opened = _top(series, END, 0.5)
        assert opened[:2] == ["db_connections_in_use", "latency_seconds"], (seed, opened)
        assert _top(series, END, 0.0)[0] != "db_connections_in_use", seed
        # asked 3 minutes after the symptoms (at an alert): the largest began near the asked
        # time, not near the window start, and nothing moves
        assert _top(series, END - 28, 0.5) == _top(series, END - 28, 0.0), seed
