"""The generated incidents: deterministic, and their ground truth is in the data."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.signals import as_matrix
from perfintel.bench import rca_baselines
from perfintel.bench.incidents import FAULT_KINDS, PROFILES, generate_incident
from perfintel.bench.incidents_holdout import generate_holdout_incident


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_deterministic_and_well_formed(name: str) -> None:
    profile = PROFILES[name]
    a, b = generate_incident(3, profile), generate_incident(3, profile)
    assert a.root == b.root and a.kind == b.kind and a.onset_ms == b.onset_ms
    for x, y in zip(a.series, b.series, strict=True):
        assert x.labels == y.labels
        np.testing.assert_array_equal(x.values, y.values)
    assert a.start_ms <= a.onset_ms < a.time_ms <= int(a.timestamps[-1])
    assert a.root in a.affected and not set(a.background) & {a.root}
    lengths = {len(s.values) for s in a.series}
    assert lengths == {profile.span_steps}
    counters = [s for s in a.series if dict(s.labels)["__name__"].endswith("_total")]
    assert counters and all(s.counter for s in counters)
    for s in counters:
        v = s.values[np.isfinite(s.values)]
        assert np.all(np.diff(v) >= 0)


def test_every_fault_kind_occurs_and_the_root_moves_at_its_onset() -> None:
    kinds = set()
    for seed in range(40):
        inc = generate_incident(seed)
        kinds.add(inc.kind)
        x, _ = as_matrix(inc.series)
        onset = (inc.onset_ms - inc.start_ms) // inc.step_ms
        root = x[inc.root]
        before = root[onset - 60 : onset]
        after = root[onset : onset + 5]
        spread = np.std(np.diff(before)) + 1e-12
        assert np.max(np.abs(after - np.median(before))) > 3 * spread, (seed, inc.kind)
    assert kinds == set(FAULT_KINDS)


def test_baselines_rank_every_series() -> None:
    inc = generate_incident(5)
    x, _ = as_matrix(inc.series)
    t = (inc.time_ms - inc.start_ms) // inc.step_ms
    n = len(inc.series)
    for ranks in (
        rca_baselines.largest_zscore(x, t, 30, 180),
        rca_baselines.epsilon_diagnosis(x, t, 30, 180),
        rca_baselines.baro(x, t, 30, 180),
    ):
        assert sorted(ranks) == list(range(n))


def test_bocpd_finds_a_change_point() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.05, (200, 3))
    d[120:] += 0.8
    cp = rca_baselines.bocpd_change_point(d)
    assert 110 <= cp <= 125


def test_holdout_generator_is_deterministic_and_its_root_moves_at_its_onset() -> None:
    kinds = set()
    for seed in range(40):
        a, b = generate_holdout_incident(seed), generate_holdout_incident(seed)
        assert a.root == b.root and a.kind == b.kind and a.time_ms == b.time_ms
        for x, y in zip(a.series, b.series, strict=True):
            assert x.labels == y.labels
            np.testing.assert_array_equal(x.values, y.values)
        assert a.start_ms <= a.onset_ms < a.time_ms <= int(a.timestamps[-1])
        assert a.root in a.affected and a.root not in a.background
        labels = [dict(s.labels) for s in a.series]
        assert {"service", "host", "container"} <= set(labels[0])
        assert any(set(d) == {"__name__", "host"} for d in labels)  # host-level series
        kinds.add(a.kind)
        x, _ = as_matrix(a.series)
        onset = (a.onset_ms - a.start_ms) // a.step_ms
        before = x[a.root, onset - 60 : onset]
        alert = (a.time_ms - a.start_ms) // a.step_ms
        after = x[a.root, onset : max(alert, onset + 6) + 1]
        spread = 1.4826 * np.median(np.abs(np.diff(before))) + 1e-12
        assert np.max(np.abs(after - np.median(before))) > 3 * spread, (seed, a.kind)
    assert kinds == set(FAULT_KINDS)
