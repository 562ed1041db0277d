"""An effect lasts no longer than its cause: a change that came back explains no lasting one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.outlive import outlived
from perfintel.analysis.signals import SeriesInput
from tests.analysis.rootcause_cases import GRID, N, T, noise, si

KW = {"window_ms": 30 * 60_000, "baseline_ms": 150 * 60_000}


def _decay(start: int, height: float, tau: float) -> np.ndarray:
    """A jump of ``height`` at ``start`` that decays with time constant ``tau`` steps."""
    t = np.arange(N) - start
    return np.where(t >= 0, height * np.exp(-np.maximum(t, 0) / tau), 0.0)


def _blip_and_a_slower_fault() -> list[SeriesInput]:
    """A batch job's CPU jumps at 196 and is back to half its peak within two minutes (a
    burst); payments' p99 jumps at 198 and takes eight minutes to get back to half (its own
    fault, a slow recovery). The two share a jitter in the baseline (one node), which a
    learned dependency reads as a link, and their paths aligned on their onsets correlate
    (0.83: both jump and decay)."""
    shared = np.random.default_rng(7).normal(0, 0.004, N)
    blip = noise(1, 0.1, 0.002) + shared + _decay(196, 0.3, 3.0)
    fault = noise(2, 0.2, 0.002) + shared + _decay(198, 0.15, 12.0)
    return [
        si("container_cpu_usage_seconds_total", "batch-0", blip, service="batch"),
        si("http_request_duration_seconds", "payments-0", fault, service="payments"),
    ]


def _ranked(series: list[SeriesInput], outlive: float) -> list[rootcause.Cause]:
    p = replace(RootCauseParams(), outlive=outlive)
    return rank_root_causes(T, series, GRID, params=p, **KW)


def test_a_blip_that_came_back_does_not_explain_a_fault_that_lasted() -> None:
    series = _blip_and_a_slower_fault()
    off = _ranked(series, 0.0)
    assert [c.index for c in off] == [0, 1]
    assert [f.index for f in off[0].followers] == [1]  # by a chance link
    on = _ranked(series, 0.5)
    assert on[0].index == 1  # the lasting fault, unexplained, first
    assert not on[0].followers and not on[1].followers


def test_outlived_pairs_a_change_that_came_back_with_one_that_lasted_a_hop_longer() -> None:
    # rows: a blip back after step 2; departed until step 6 (within a hop of 4); until
    # step 9 (beyond it); still departed at the end; a small change (level = onset_sigma)
    z = np.zeros((5, 12))
    z[0, 1:3] = 40.0
    z[1, 2:7] = 30.0
    z[2, 2:10] = 30.0
    z[3, 3:] = 30.0
    z[4, 4:6] = 4.0
    peak = np.array([40.0, 30.0, 30.0, 30.0, 4.0])
    out = outlived(z, peak, 3.0, 0.5, before=11, max_prop=4)
    assert out[0].tolist() == [False, False, True, True, False]
    assert out[4].tolist() == [
        False,
        False,
        False,
        True,
        False,
    ]  # back after 5; row 3 lasts to the end
    assert not out[3].any()  # still departed at the incident: came back from nothing
    assert not out[:, 0].any()  # nothing outlived by the blip
    assert not outlived(z, peak, 3.0, 0.0, before=11, max_prop=4).any()  # off
    # a change back only after the incident time is no bygone one
    assert not outlived(z, peak, 3.0, 0.5, before=2, max_prop=1)[0].any()


def test_a_blip_that_came_back_is_no_orphans_explainer_either() -> None:
    # no shared jitter: the CPU burst has no learned link to the two services' p99, which
    # nothing else explains (orphans); their course follows its own closely (aligned on the
    # onsets), so the orphan rule links them to it — unless it came back long before they did
    blip = noise(1, 0.1, 0.002) + _decay(196, 0.3, 5.0)
    series = [si("container_cpu_usage_seconds_total", "batch-0", blip, service="batch")]
    for k, name in enumerate(("payments", "orders")):
        p99 = noise(4 + k, 0.2, 0.002) + _decay(198, 0.15 + 0.02 * k, 12.0)
        series.append(si("http_request_duration_seconds", f"{name}-0", p99, service=name))
    off = _ranked(series, 0.0)
    assert off[0].index == 0
    assert 2 in [f.index for f in off[0].followers]
    on = _ranked(series, 0.5)
    assert on[-1].index == 0 and not on[-1].followers
