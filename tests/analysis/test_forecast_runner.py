"""forecast_many: the orchestrator with its fallback chain."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.forecast import Forecaster, SeasonalNaive, fit_predict, forecast_many


def series(seed: int, n: int = 24 * 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, n)


class Broken(Forecaster):
    name = "broken"

    def point(self, z: np.ndarray, h: int, seasons: object) -> np.ndarray:
        raise ValueError("always fails")


def test_one_bad_series_never_fails_the_batch() -> None:
    batch = [series(0), np.full(10, np.nan), np.array([]), series(1)]
    out = forecast_many(batch, 12, season_lengths=[24])
    assert len(out) == 4
    assert out[0].model.startswith("auto") and out[3].model.startswith("auto")
    for bad in out[1:3]:
        assert bad.model == "failed" and bad.notes
        assert bad.mean.shape == (12,) and np.all(np.isnan(bad.mean))


def test_fallback_model_used_when_the_forecaster_raises() -> None:
    out = forecast_many([series(0)], 12, season_lengths=[24], forecaster=Broken())
    assert out[0].model == SeasonalNaive().name
    assert any("always fails" in n for n in out[0].notes)


def test_same_results_in_worker_processes_and_in_order() -> None:
    batch = [series(s, 24 * 10 + 7 * s) for s in range(6)]
    one = forecast_many(batch, 24, season_lengths=[24], workers=1)
    two = forecast_many(batch, 24, season_lengths=[24], workers=2)
    for a, b, y in zip(one, two, batch, strict=True):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.mean, fit_predict(y, 24, season_lengths=[24]).mean)


def test_step_seconds_gives_calendar_seasons_and_progress() -> None:
    seen: list[tuple[int, int]] = []
    out = forecast_many(
        [series(0, 24 * 15), series(1, 24 * 3)],
        6,
        step_seconds=3600,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert out[0].season_lengths == (24, 168)
    assert out[1].season_lengths == (24,)
    assert seen[-1] == (2, 2)
