"""Data faults of real scrapes on generated incidents: same truth, deterministic, rate kept."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.signals import per_step_increase
from perfintel.bench.asked import (
    BASELINE_MS,
    PERTURBATIONS,
    WINDOW_MS,
    is_counter,
    perturbation,
    perturbed,
    transform,
)
from perfintel.bench.incidents import DEFAULT_PROFILE, VARIANT_PROFILE, Incident, generate_incident


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def _truth(inc: Incident) -> tuple[object, ...]:
    return (inc.seed, inc.kind, inc.root, inc.onset_ms, inc.time_ms, inc.affected, inc.start_ms)


def _window(inc: Incident) -> tuple[int, int, int]:
    t = (inc.time_ms - inc.start_ms) // inc.step_ms
    ws = t - WINDOW_MS // inc.step_ms
    return max(1, ws - BASELINE_MS // inc.step_ms), ws, t


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_perturbed_keeps_the_truth_and_is_deterministic(name: str) -> None:
    for seed in range(4):
        inc = generate_incident(seed, VARIANT_PROFILE)
        out, again = perturbed(inc, name), perturbed(inc, name)
        assert _truth(out) == _truth(inc)
        assert set(inc.background) <= set(out.background)
        # the root is touched only by missed scrapes; series keep their place (only appended)
        root, was = out.series[inc.root].values, inc.series[inc.root].values
        assert _same(root, was) or (
            name in ("gaps", "recent") and _same(root[~np.isnan(root)], was[~np.isnan(root)])
        )
        assert [s.labels for s in out.series[: len(inc.series)]] == [s.labels for s in inc.series]
        assert len(again.series) == len(out.series)
        assert all(_same(a.values, b.values) for a, b in zip(out.series, again.series, strict=True))
        assert any(
            not _same(a.values, b.values) for a, b in zip(out.series, inc.series, strict=False)
        ) or len(out.series) > len(inc.series)
    assert perturbed(inc, "none") is inc


def test_gaps_lose_about_their_rate_of_samples_in_short_runs() -> None:
    lost = total = 0
    for seed in range(6):
        inc = generate_incident(seed, DEFAULT_PROFILE)
        out = perturbed(inc, "gaps:0.05")
        for a, b in zip(inc.series, out.series, strict=True):
            gone = np.isnan(b.values) & ~np.isnan(a.values)
            assert not np.isnan(b.values[[0, -1]]).any()
            assert np.array_equal(a.values[~gone], b.values[~gone])  # nothing else moves
            lost, total = lost + int(gone.sum()), total + gone.size
    assert 0.035 < lost / total < 0.07  # overlapping runs lose a little less, long gaps add some
    assert perturbation("gaps") == ("gaps", 0.02)


def test_resets_restart_some_counters_once_from_zero_not_the_root() -> None:
    reset = counters = 0
    for seed in range(6):
        inc = generate_incident(seed, DEFAULT_PROFILE)
        out = perturbed(inc, "resets:0.5")
        b0, _, t = _window(inc)
        for i, (a, b) in enumerate(zip(inc.series, out.series, strict=True)):
            if not is_counter(a):
                assert _same(a.values, b.values)
                continue
            counters += 1
            drops = np.flatnonzero(np.diff(b.values) < 0) + 1
            if _same(a.values, b.values):
                continue
            assert i != inc.root and drops.size == 1 and b0 <= drops[0] <= t
            reset += 1
            r = int(drops[0])
            # the counter counts from 0 within step r: every other step's increase is kept
            da, db = per_step_increase(a.values), per_step_increase(b.values)
            keep = np.ones(da.size, dtype=bool)
            keep[[0, r]] = False
            assert np.allclose(da[keep], db[keep])
            assert 0 <= db[r] <= da[r] + 1e-9
    assert 0.35 < reset / counters < 0.65


def test_late_series_are_background_born_in_the_first_part_of_the_baseline() -> None:
    born = pool = 0
    for seed in range(6):
        inc = generate_incident(seed, DEFAULT_PROFILE)
        out = perturbed(inc, "late:0.5")
        b0, ws, _ = _window(inc)
        reached = {dict(inc.series[i].labels)["service"] for i in inc.affected}
        for a, b in zip(inc.series, out.series, strict=True):
            background = dict(a.labels)["service"] not in reached
            pool += background
            if _same(a.values, b.values):
                continue
            assert background
            first = int(np.flatnonzero(np.isfinite(b.values))[0])
            assert b0 + 0.1 * (ws - b0) - 1 <= first <= b0 + 0.4 * (ws - b0)
            assert np.array_equal(a.values[first:], b.values[first:])
            born += 1
    assert 0.35 < born / pool < 0.65


def test_recent_data_begin_part_way_into_the_baseline_for_every_series() -> None:
    for seed in range(3):
        inc = generate_incident(seed, VARIANT_PROFILE)
        out = perturbed(inc, "recent")
        b0, ws, _ = _window(inc)
        begin = b0 + int(PERTURBATIONS["recent"] * (ws - b0))
        for a, b in zip(inc.series, out.series, strict=True):
            assert np.isnan(b.values[:begin]).all()
            assert _same(a.values[begin:], b.values[begin:])


def test_noise_appends_half_as_many_background_series_again_under_new_labels() -> None:
    inc = generate_incident(3, DEFAULT_PROFILE)
    out = perturbed(inc, "noise")
    reached = {dict(inc.series[i].labels)["service"] for i in inc.affected}
    pool = [s for s in inc.series if dict(s.labels)["service"] not in reached]
    added = out.series[len(inc.series) :]
    assert len(added) == round(0.5 * len(pool))
    assert len({s.labels for s in out.series}) == len(out.series)  # every series its own labels
    assert all(dict(s.labels)["service"] not in reached for s in added)
    assert all(_same(a.values, b.values) for a, b in zip(inc.series, out.series, strict=False))
    assert set(out.background) - set(inc.background) <= set(range(len(inc.series), len(out.series)))


def test_transform_perturbs_before_asking_and_refuses_unknown_faults() -> None:
    inc = generate_incident(2, DEFAULT_PROFILE)
    out = transform("at-alert", 1, "gaps")(inc)
    assert out is not None and np.isnan(np.concatenate([s.values for s in out.series])).any()
    with pytest.raises(ValueError):
        transform("at-alert", 1, "jitter")
    with pytest.raises(ValueError):
        perturbation("gaps:2")
