"""The blind incident generator: deterministic, and its ground truth is in the data."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.signals import as_matrix, per_step_increase
from perfintel.bench.incidents import FAULT_KINDS, Incident
from perfintel.bench.incidents_blind import (
    BlindTruth,
    generate_blind_incident,
    generate_blind_incident_with_truth,
)
from perfintel.model import format_series, metric_name, parse_selector, validate_label_set

SEEDS = range(0, 24)


@pytest.fixture(scope="module")
def generated() -> list[tuple[Incident, BlindTruth]]:
    return [generate_blind_incident_with_truth(s) for s in SEEDS]


def _signal(inc: Incident, k: int) -> np.ndarray:
    """What a series says per step: a counter's increase, a gauge's value."""
    s = inc.series[k]
    return per_step_increase(s.values) if s.counter else s.values


def _robust_z(inc: Incident, k: int, start: int, stop: int) -> float:
    """How far the median over steps ``start:stop`` sits from the three hours before the onset."""
    x = _signal(inc, k)
    onset = (inc.onset_ms - inc.start_ms) // inc.step_ms
    base = x[onset - 10_800_000 // inc.step_ms : onset]
    med = np.nanmedian(base)
    # sparse counts (errors) have no MAD: fall back on half the standard deviation
    sd = max(1.4826 * np.nanmedian(np.abs(base - med)), 0.5 * np.nanstd(base), 1e-12)
    return float(abs(np.nanmedian(x[start:stop]) - med) / sd)


def test_deterministic_per_seed() -> None:
    a, b = generate_blind_incident(7), generate_blind_incident(7)
    assert (a.root, a.kind, a.onset_ms, a.time_ms) == (b.root, b.kind, b.onset_ms, b.time_ms)
    assert a.affected == b.affected and a.background == b.background
    for x, y in zip(a.series, b.series, strict=True):
        assert x.labels == y.labels and x.counter == y.counter
        np.testing.assert_array_equal(x.values, y.values)
    c = generate_blind_incident(8)
    assert [s.labels for s in c.series] != [s.labels for s in a.series]


def test_grid_history_and_times(generated: list[tuple[Incident, BlindTruth]]) -> None:
    for inc, _ in generated:
        assert inc.step_ms in (15_000, 30_000, 60_000)
        assert inc.start_ms % inc.step_ms == 0
        assert {len(s.values) for s in inc.series} == {len(inc.timestamps)}
        assert np.all(np.diff(inc.timestamps) == inc.step_ms)
        assert inc.start_ms < inc.onset_ms < inc.time_ms <= int(inc.timestamps[-1])
        # a 3 h baseline and a 30 min window fit before the alert
        assert inc.time_ms - inc.start_ms >= 4 * 3_600_000
        assert inc.kind in FAULT_KINDS
    assert {inc.kind for inc, _ in generated} == set(FAULT_KINDS)


def test_labels_well_formed_and_parseable(generated: list[tuple[Incident, BlindTruth]]) -> None:
    for inc, _ in generated:
        assert len({s.labels for s in inc.series}) == len(inc.series)
        for s in inc.series:
            validate_label_set(s.labels)
            labels = dict(s.labels)
            assert metric_name(s.labels) and {"namespace", "pod", "instance", "job"} <= set(labels)
            # the project's own selector parser reads every series back to itself
            sel = parse_selector(format_series(s.labels))
            assert all(m.matches(labels.get(m.name, "")) for m in sel.matchers)
            assert s.counter == metric_name(s.labels).endswith("_total")
        assert len(inc.services) == len(inc.callees) == len(set(inc.services))


def test_call_graph_is_a_dag_every_service_reachable_from_the_edge(
    generated: list[tuple[Incident, BlindTruth]],
) -> None:
    for inc, _ in generated:
        for a, cs in enumerate(inc.callees):
            assert all(b > a for b in cs)  # index order is topological: no cycles
        seen, todo = {0}, [0]
        while todo:
            for c in inc.callees[todo.pop()]:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        assert seen == set(range(len(inc.services)))


def test_counters_monotone_except_declared_resets(
    generated: list[tuple[Incident, BlindTruth]],
) -> None:
    declared = 0
    for inc, truth in generated:
        for k, s in enumerate(inc.series):
            if not s.counter:
                continue
            ok = np.isfinite(s.values)
            steps = np.flatnonzero(ok)
            drops = steps[1:][np.diff(s.values[ok]) < 0]
            resets = truth.resets.get(k, [])
            # a drop only where a restart is declared (a missed scrape may hide the reset step)
            for d in drops:
                assert any(r <= d and not ok[r:d].any() for r in resets) or d in resets
            declared += len(resets)
    assert declared > 0  # the seeds include container restarts


def test_root_changes_at_onset_and_is_not_background(
    generated: list[tuple[Incident, BlindTruth]],
) -> None:
    for inc, truth in generated:
        assert 0 <= inc.root < len(inc.series)
        assert inc.root in inc.affected and inc.root not in inc.background
        onset = (inc.onset_ms - inc.start_ms) // inc.step_ms
        alert = (inc.time_ms - inc.start_ms) // inc.step_ms
        before = _robust_z(inc, inc.root, onset - 20, onset)
        up_to_alert = _robust_z(inc, inc.root, max(onset, alert - 4), alert + 1)
        assert up_to_alert >= 4 > before, (inc.seed, truth.root_metric, before, up_to_alert)


def test_affected_change_after_the_root(generated: list[tuple[Incident, BlindTruth]]) -> None:
    moved = total = 0
    for inc, truth in generated:
        onset = (inc.onset_ms - inc.start_ms) // inc.step_ms
        alert = (inc.time_ms - inc.start_ms) // inc.step_ms
        for k in inc.affected:
            assert truth.owner[k] in truth.reached
            if k == inc.root:
                continue
            name = metric_name(inc.series[k].labels)
            assert name in ("http_request_duration_seconds", "http_errors_total")
            # nothing happened to them before the onset
            assert _robust_z(inc, k, onset - 20, onset) < 4
            total += 1
            moved += _robust_z(inc, k, max(onset, alert - 4), alert + 1) >= 3
        # the edge, which every fault reaches, is bad at the alert
        assert 0 in truth.reached
    assert moved >= 0.6 * total  # attenuation may hide the far ones, not most


def test_background_outside_affected_services(generated: list[tuple[Incident, BlindTruth]]) -> None:
    counts = []
    for inc, truth in generated:
        assert not set(inc.background) & set(inc.affected)
        for k in inc.background:
            assert truth.owner[k] not in truth.reached
        counts.append(len(inc.background))
    assert max(counts) >= 2 and sum(c > 0 for c in counts) >= 0.8 * len(counts)


def test_series_ingest_as_a_matrix(generated: list[tuple[Incident, BlindTruth]]) -> None:
    inc, _ = generated[0]
    x, usable = as_matrix(inc.series)
    assert x.shape == (len(inc.series), len(inc.timestamps)) and usable.all()
    assert np.isfinite(x).all()
    assert np.mean([np.isnan(s.values).mean() for s in inc.series]) < 0.01
