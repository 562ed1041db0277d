"""The ``fresh`` incident generator: deterministic, on its grid, honest about its truth."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from perfintel.bench.incidents import FAULT_KINDS
from perfintel.bench.incidents_fresh import FreshCase, fresh_case, generate_fresh_incident
from perfintel.model import metric_name, validate_label_set

SEEDS = range(0, 8)
MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def cases() -> list[FreshCase]:
    return [fresh_case(s) for s in SEEDS]


def test_same_seed_same_incident(cases: list[FreshCase]) -> None:
    a, b = cases[5].incident, generate_fresh_incident(5)
    assert (a.root, a.onset_ms, a.time_ms, a.kind) == (b.root, b.onset_ms, b.time_ms, b.kind)
    assert [s.labels for s in a.series] == [s.labels for s in b.series]
    for x, y in zip(a.series, b.series, strict=True):
        np.testing.assert_array_equal(x.values, y.values)
    c = cases[6].incident
    assert c.time_ms != a.time_ms or len(c.series) != len(a.series)


def test_every_series_on_the_grid(cases: list[FreshCase]) -> None:
    for case in cases:
        inc = case.incident
        n = len(inc.series[0].values)
        assert all(len(s.values) == n for s in inc.series)
        assert inc.step_ms in (10_000, 15_000, 30_000)
        assert (inc.time_ms - inc.start_ms) % inc.step_ms == 0
        assert inc.start_ms < inc.time_ms <= int(inc.timestamps[-1])
        assert len({s.labels for s in inc.series}) == len(inc.series)  # no duplicate series
        for s in inc.series:
            validate_label_set(s.labels)


def test_alert_follows_the_fault_with_enough_history(cases: list[FreshCase]) -> None:
    for case in cases:
        inc = case.incident
        assert inc.onset_ms < inc.time_ms <= inc.onset_ms + 30 * MINUTE_MS
        # the benchmark's 30 min window and 180 min baseline fit before the alert
        assert inc.time_ms - inc.start_ms >= 210 * MINUTE_MS
        assert inc.time_ms - inc.start_ms <= 8 * 60 * MINUTE_MS


def test_counters_monotone_except_planted_restarts(cases: list[FreshCase]) -> None:
    counters = 0
    for case in cases:
        inc = case.incident
        restarts = defaultdict(set)
        for svc, pod, at in case.restarts:
            restarts[svc, pod].add(at)
        for j, s in enumerate(inc.series):
            if not s.counter:
                continue
            counters += 1
            x = s.values
            ok = np.flatnonzero(np.isfinite(x))
            down = np.flatnonzero(np.diff(x[ok]) < 0)
            m = case.with_fault.meta[j]
            for before, after in zip(ok[down], ok[down + 1], strict=True):
                # a restart's scrape is missed: the drop shows at the first one after it
                assert any(before < at <= after for at in restarts[m.svc, m.pod]), metric_name(
                    s.labels
                )
            assert np.all(x[ok] >= 0)
    assert counters > 100


def test_histogram_buckets_cumulative_in_le(cases: list[FreshCase]) -> None:
    histograms = 0
    for case in cases:
        groups: dict[tuple[tuple[str, str], ...], list[tuple[float, np.ndarray]]] = defaultdict(
            list
        )
        counts = {}
        for s in case.incident.series:
            name = metric_name(s.labels)
            rest = tuple((k, v) for k, v in s.labels if k not in ("le", "__name__"))
            if name.endswith("_bucket"):
                le = float(dict(s.labels)["le"].replace("+Inf", "inf"))
                groups[name[: -len("_bucket")], *rest].append((le, s.values))
            elif name.endswith("_count"):
                counts[name[: -len("_count")], *rest] = s.values
        for key, buckets in groups.items():
            histograms += 1
            buckets.sort(key=lambda b: b[0])
            assert np.isinf(buckets[-1][0]) and len(buckets) >= 7
            stack = np.stack([v for _, v in buckets])
            ok = np.isfinite(stack).all(axis=0)
            assert np.all(np.diff(stack[:, ok], axis=0) >= 0), key
            np.testing.assert_array_equal(stack[-1], counts[key])
    assert histograms > 0


def test_root_changes_at_its_onset_noise_free(cases: list[FreshCase]) -> None:
    for case in cases:
        inc = case.incident
        r, t0 = inc.root, case.onset
        n = len(inc.series[0].values)
        with_f, without = case.with_fault.values[r][:n], case.without_fault.values[r][:n]
        noisy = inc.series[r].values
        if inc.series[r].counter:
            with_f, without, noisy = (np.diff(v, prepend=v[0]) for v in (with_f, without, noisy))
        np.testing.assert_allclose(with_f[:t0], without[:t0])  # nothing before the onset
        hour = 3_600_000 // inc.step_ms
        e = (noisy - without)[t0 - hour : t0]
        e = e[np.isfinite(e)]
        sd = 1.4826 * np.median(np.abs(e - np.median(e)))
        change = np.abs(with_f - without)[t0:]
        assert np.sort(change)[-2] > 4.0 * sd, (inc.seed, case.mechanism)
        assert "bucket" not in metric_name(inc.series[r].labels)


def test_truth_sets(cases: list[FreshCase]) -> None:
    for case in cases:
        inc = case.incident
        assert inc.root in inc.affected
        assert not set(inc.affected) & set(inc.background)
        assert all(0 <= j < len(inc.series) for j in [*inc.affected, *inc.background])
        names = set(inc.services)
        assert len(inc.callees) == len(inc.services)
        assert all(
            0 <= c < len(inc.services) and c != s for s, cs in enumerate(inc.callees) for c in cs
        )
        assert inc.services[0] in ("ingress-nginx", "haproxy")
        labelled = {dict(s.labels).get("service") for s in inc.series} - {None}
        assert labelled <= names


def test_every_fault_kind_and_several_mechanisms(cases: list[FreshCase]) -> None:
    assert {c.incident.kind for c in cases} == set(FAULT_KINDS)
    assert len({c.mechanism for c in cases}) >= 5
    # some incidents page on the user-facing signal, and some scrape steps differ
    assert any(c.paged_by == "sli" for c in cases)
    assert len({c.incident.step_ms for c in cases}) >= 2
