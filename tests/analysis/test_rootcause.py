"""The root-cause core: onsets, propagation order, graph direction, odd inputs."""

from __future__ import annotations

import doctest
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.analysis import correlation
from perfintel.analysis.rootcause import DependencyGraph, RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause import ranking as rootcause
from perfintel.analysis.rootcause.baseline import value_grid
from perfintel.analysis.rootcause.cycles import after_explainers_by_cycle, components
from perfintel.analysis.rootcause.pairs import path_corrs
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.bench.incidents_blind import generate_blind_incident
from perfintel.errors import BadInputError
from perfintel.model import label_set, metric_name
from tests.analysis.rootcause_cases import GRID, STEP, N, T, noise, si


def test_doctests() -> None:
    assert doctest.testmod(rootcause).failed == 0


def test_propagation_order_decides_and_the_explanation_says_so() -> None:
    pool = noise(1, 10, 0.5)
    pool[200:] = 40  # the database's connection pool saturates at 03:20
    db_latency = noise(2, 0.05, 0.001)
    db_latency[201:] += 0.04
    api_latency = noise(3, 0.12, 0.002)
    api_latency[203:] += 0.06  # the API waits on the database two minutes later
    unrelated = noise(4, 100, 1)
    unrelated[150:152] += 30  # a cron spike an hour earlier, bigger in sigmas
    series = [
        si("checkout_latency_seconds", "api-1", api_latency, "checkout"),
        si("db_latency_seconds", "db-1", db_latency, "postgres"),
        si("db_connections", "db-1", pool, "postgres"),
        si("batch_cpu", "batch-1", unrelated, "batch"),
        si("quiet", "q-1", noise(5, 3, 0.1), "quiet"),
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=90 * STEP, baseline_ms=100 * STEP)
    names = [dict(c.labels)["__name__"] for c in causes]
    assert names[0] == "db_connections"
    assert "quiet" not in names  # never left its baseline
    top = causes[0]
    assert top.onset_ms == 200 * STEP and top.shape == "saturation" and top.sigma > 20
    assert [series[f.index].labels for f in top.followers][:1] == [series[1].labels]
    assert top.explanation.startswith(
        "db_latency_seconds on db-1 rose 60 s after db_connections on db-1 saturated (onset 03:20:00"
    )
    api = next(c for c in causes if dict(c.labels)["__name__"] == "checkout_latency_seconds")
    assert api.explained_by is not None and "it may itself follow" in api.explanation
    assert names.index("checkout_latency_seconds") > names.index("db_latency_seconds")
    assert top.values.shape == top.expected.shape == top.z.shape


def test_graph_direction_when_known() -> None:
    """The caller moves a minute before its callee: data alone says the caller explains the
    callee; the graph says a fault cannot travel from caller to callee."""
    caller = noise(1, 1.0, 0.01)
    caller[200:] += 0.2
    callee = noise(2, 1.0, 0.01)
    callee[201:] += 0.25
    series = [si("latency", "a-1", caller, "a"), si("latency", "b-1", callee, "b")]
    kw = {"window_ms": 60 * STEP, "baseline_ms": 120 * STEP}
    without = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
    assert dict(without[0].labels)["service"] == "a" and without[0].followers
    graph = DependencyGraph.from_edges([("a", "b")])
    assert graph.reachable_from("b") == {"a", "b"} and graph.reachable_from("a") == {"a"}
    with_graph = rank_root_causes(T, series, GRID, graph, **kw)  # type: ignore[arg-type]
    assert dict(with_graph[0].labels)["service"] == "b"
    assert all(not c.followers for c in with_graph)


def test_a_change_after_the_incident_cannot_be_its_cause() -> None:
    before = noise(1, 5, 0.1)
    before[205:] += 1.0
    after = noise(2, 5, 0.1)
    after[225:] += 10.0  # much bigger, but five minutes after the incident
    series = [si("early", "x", before), si("late", "y", after)]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=120 * STEP)
    assert [dict(c.labels)["__name__"] for c in causes] == ["early", "late"]
    assert causes[1].score < causes[0].score - 100


def test_counters_are_analysed_as_increases() -> None:
    rng = np.random.default_rng(0)
    inc = rng.poisson(100, N).astype(float)
    inc[210:] += 80  # twice the errors
    counter = SeriesInput(
        label_set({"__name__": "errors_total", "instance": "x"}), np.cumsum(inc), True
    )
    (c,) = rank_root_causes(T, [counter], GRID, window_ms=30 * STEP, baseline_ms=120 * STEP)
    assert c.onset_ms == 210 * STEP and c.sigma > 6 and np.nanmax(c.values) > 150
    # a counter always grows: the sentence says its rate rose
    assert c.explanation.startswith("the rate of errors_total on x rose"), c.explanation


def test_bad_input() -> None:
    s = [si("a", "x", noise(1, 1, 0.1))]
    with pytest.raises(BadInputError, match="baseline"):
        rank_root_causes(3 * STEP, s, GRID, window_ms=STEP, baseline_ms=STEP)
    with pytest.raises(BadInputError, match="grid"):
        rank_root_causes(T, s, Grid(0, STEP, N + 1))
    with pytest.raises(BadInputError):
        rank_root_causes(T, s, GRID, window_ms=0)


values = st.lists(
    st.one_of(st.floats(-1e12, 1e12), st.just(float("nan")), st.just(0.0)),
    min_size=N,
    max_size=N,
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(values, min_size=1, max_size=5), st.integers(100, N - 1), st.sampled_from([0, 1, 3])
)
def test_any_input_gives_well_formed_causes(rows: list[list[float]], t: int, lead: int) -> None:
    series = [si(f"s{i}", f"h{i}", np.asarray(r)) for i, r in enumerate(rows)]
    series.append(si("constant", "c", np.full(N, 7.0)))
    p = rootcause.RootCauseParams(lead=float(lead))
    causes = rank_root_causes(
        t * STEP, series, GRID, window_ms=40 * STEP, baseline_ms=50 * STEP, params=p
    )
    assert len({c.index for c in causes}) == len(causes)
    assert all(dict(c.labels)["__name__"] != "constant" for c in causes)
    for c in causes:
        assert (
            np.isfinite(c.score)
            and np.isfinite(c.sigma)
            and abs(c.sigma) >= rootcause.RootCauseParams().min_sigma
        )
        assert c.shape in ("shift", "spike", "ramp", "saturation") and c.explanation
    assert [c.score for c in causes] == sorted((c.score for c in causes), reverse=True)


def test_a_series_first_sampled_past_half_its_baseline_is_no_candidate() -> None:
    """A pod started during the baseline's second half: its first samples, carried back over
    the rest, made a baseline of one value and any move of it a 10⁹σ change that outranked
    the real cause. A series sampled from half way into the baseline on still counts."""
    pool = noise(1, 10, 0.5)
    pool[200:] = 40  # the cause: a pool saturates at step 200 (window 170-220, baseline 70-170)
    newcomer = noise(2, 5, 1.0)
    newcomer[:150] = np.nan  # first sampled at 150, past half way (120)
    halfway = noise(3, 5, 0.2)
    halfway[:120] = np.nan
    halfway[205:] += 4  # a real change, measured against 50 steps of its own
    series = [
        si("pool", "db-1", pool),
        si("newcomer", "pod-9", newcomer),
        si("halfway", "h", halfway),
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=50 * STEP, baseline_ms=100 * STEP)
    assert [dict(c.labels)["__name__"] for c in causes] == ["pool", "halfway"]
    # every candidate too young: nothing to rank, no error
    young = [si("a", "x", np.where(np.arange(N) >= 200, noise(4, 1, 0.1), np.nan))]
    assert rank_root_causes(T, young, GRID, window_ms=50 * STEP, baseline_ms=100 * STEP) == []


def test_the_baseline_is_what_was_recorded_when_the_data_begin_inside_it() -> None:
    """Asked with a 3 h baseline an hour and a half after collection began (the grid starts
    earlier, nothing recorded there): every series was first sampled past half the asked
    baseline, yet none was born late; the data begin there. The baseline is the hour
    recorded before the window, and the cause is found (none was a candidate before)."""
    begin = 130  # window 190-220 opens 60 steps after the data begin
    pool = noise(1, 10, 0.5)
    pool[200:] = 40
    latency = noise(2, 0.1, 0.002)
    latency[203:] += 0.05
    calm = noise(3, 5, 0.2)
    rows = [("pool", "db-1", pool), ("latency_seconds", "api-1", latency), ("calm", "x", calm)]
    series = [si(n, i, np.where(np.arange(N) >= begin, v, np.nan)) for n, i, v in rows]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=180 * STEP)
    assert [dict(c.labels)["__name__"] for c in causes][:2] == ["pool", "latency_seconds"]
    assert causes[0].onset_ms == 200 * STEP
    # the same data on a grid that begins with them: the same ranking
    cut = [si(n, i, v[begin:]) for n, i, v in rows]
    again = rank_root_causes(
        T, cut, Grid(begin * STEP, STEP, N - begin), window_ms=30 * STEP, baseline_ms=180 * STEP
    )
    assert [(c.labels, c.onset_ms, c.score) for c in again] == [
        (c.labels, c.onset_ms, c.score) for c in causes
    ]


def test_changes_in_the_same_step_are_ordered_by_role_inside_a_workload() -> None:
    """CPU, latency and errors of one instance move in the same minute, errors by far the
    most sigmas: the resource is upstream of how slow, which is upstream of how often it
    fails (the fault's size alone would pick the errors)."""
    cpu = noise(1, 0.3, 0.01)
    cpu[205:] += 0.15
    latency = noise(2, 0.1, 0.002)
    latency[205:] += 0.05
    errors = noise(3, 0.001, 0.00002)
    errors[205:] += 0.05
    series = [
        si("request_errors_ratio", "db-1", errors),
        si("request_latency_seconds", "db-1", latency),
        si("cpu_usage_ratio", "db-1", cpu),
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=150 * STEP)
    assert [rootcause.role_of(c.labels) for c in causes] == ["resource", "latency", "errors"]
    assert abs(causes[2].sigma) > abs(causes[0].sigma)


def test_a_cpu_comes_before_its_own_throttling_that_began_with_it() -> None:
    """A CPU hog in a pod with a limit: its usage, its CFS throttling (none before: a move
    of hundreds of σ) and its latency all move in one minute. Throttling is the usage meeting
    its quota (USE: saturation after utilisation): the usage is first, not the largest."""
    rng = np.random.default_rng(7)
    usage = np.cumsum(np.r_[rng.normal(0.3, 0.01, 205), rng.normal(0.5, 0.01, N - 205)])
    periods = np.cumsum(np.r_[np.zeros(205), rng.poisson(40, N - 205)]).astype(float)
    latency = noise(2, 0.1, 0.002)
    latency[205:] += 0.05
    pod = {"pod": "api-7", "service": "api"}
    series = [
        SeriesInput(label_set({"__name__": name, **pod}), values, counter)
        for name, values, counter in (
            ("container_cpu_cfs_throttled_periods_total", periods, True),
            ("http_server_duration_seconds", latency, False),
            ("container_cpu_usage_seconds_total", usage, True),
        )
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=150 * STEP)
    names = [metric_name(c.labels) for c in causes]
    assert names[0] == "container_cpu_usage_seconds_total", names
    assert abs(causes[names.index("container_cpu_cfs_throttled_periods_total")].sigma) > abs(
        causes[0].sigma
    )


def test_a_pool_comes_before_latency_in_the_same_step_only_when_it_hit_its_cap() -> None:
    """Occupancy is arrivals × latency (Little's law): a pool that fills up as requests slow
    down is no cause; one that hit its cap is."""
    latency = noise(2, 0.1, 0.002)
    latency[205:] += 0.2
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
    follows = noise(1, 20, 1.0)
    follows[205:] += 12  # occupancy rising with latency, far below any cap
    capped = noise(1, 20, 1.0)
    capped[205:] = 64  # the pool is full
    for pool, first in ((follows, "request_latency_seconds"), (capped, "db_pool_in_use")):
        series = [
            si("request_latency_seconds", "db-1", latency),
            si("db_pool_in_use", "db-1", pool),
        ]
        causes = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
        assert dict(causes[0].labels)["__name__"] == first


def test_open_descriptors_follow_the_cpu_and_the_latency_that_began_with_them() -> None:
    """Open file descriptors are one per connection in flight (arrivals × latency): begun in
    the same step as the workload's CPU, far below their limit, they follow it however many
    more sigmas they moved, and they move with latency either way, so the larger comes first
    (``little_order`` 2; with 0 the larger first against the CPU, the resource before the
    latency)."""
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
    fds = noise(1, 100, 2.0)
    fds[205:] += 60  # far more sigmas than either, far below any limit
    cpu = noise(2, 0.3, 0.01)
    cpu[205:] += 0.15
    lat = noise(3, 0.1, 0.002)
    lat[205:] += 0.1  # more sigmas than the descriptors
    for name, values in (("request_duration_seconds", lat), ("process_cpu_seconds", cpu)):
        series = [si("process_open_fds", "app-1", fds), si(name, "app-1", values)]
        for order, first in ((2.0, name), (0.0, "process_open_fds")):
            p = rootcause.RootCauseParams(little_order=order)
            causes = rank_root_causes(T, series, GRID, params=p, **kw)  # type: ignore[arg-type]
            assert dict(causes[0].labels)["__name__"] == first, (name, order)


def test_a_machine_moving_with_its_workload_comes_before_it() -> None:
    steal = noise(1, 2.0, 0.05)
    steal[205:] += 2.0
    lat = noise(2, 0.1, 0.001)
    lat[205:] += 0.2  # far more sigmas than the host's CPU
    host = SeriesInput(label_set({"__name__": "node_cpu_busy", "host": "n1"}), steal)
    app = SeriesInput(
        label_set({"__name__": "app_duration", "host": "n1", "container": "app-0"}), lat
    )
    causes = rank_root_causes(T, [app, host], GRID, window_ms=30 * STEP, baseline_ms=150 * STEP)
    assert dict(causes[0].labels) == {"__name__": "node_cpu_busy", "host": "n1"}
    assert rootcause.host_of(host.labels) == ("n1", True)
    assert rootcause.host_of(app.labels) == ("n1", False)


def test_a_pods_series_are_one_workload_whichever_target_scraped_them() -> None:
    """Kubernetes: cAdvisor's CPU of a pod is scraped from the node's kubelet (its
    ``instance``), the pod's own latency from the pod; ``pod`` ties them, so the role order
    inside one workload puts the CPU first although the latency moved more sigmas."""
    cpu = noise(1, 0.3, 0.01)
    cpu[205:] += 0.15
    lat = noise(2, 0.1, 0.001)
    lat[205:] += 0.2
    kubelet = {"instance": "10.0.0.7:10250", "job": "kubelet", "node": "n7"}
    series = [
        SeriesInput(
            label_set(
                {
                    "__name__": "http_request_duration_seconds",
                    "instance": "10.2.0.5:8080",
                    "pod": "checkout-6d9f-x2",
                    "namespace": "shop",
                }
            ),
            lat,
        ),
        SeriesInput(
            label_set(
                {
                    "__name__": "container_cpu_usage_ratio",
                    "pod": "checkout-6d9f-x2",
                    "namespace": "shop",
                    **kubelet,
                }
            ),
            cpu,
        ),
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=150 * STEP)
    assert [metric_name(c.labels) for c in causes][:1] == ["container_cpu_usage_ratio"]
    assert "container_cpu_usage_ratio on checkout-6d9f-x2" in causes[0].explanation
    other = label_set({"__name__": "container_cpu_usage_ratio", "pod": "redis-0", **kubelet})
    assert rootcause.entity_of(other) != rootcause.entity_of(series[1].labels)


def test_a_leak_explains_the_failures_it_causes_much_later_in_its_workload() -> None:
    """Memory grows for 20 minutes before the errors of the same instance jump (by far more
    sigmas): exhaustion comes when the growth reaches a limit, long after any propagation
    delay, and the leak is still the cause."""
    mem = noise(1, 1e9, 2e6)
    mem[195:] += 4e6 * np.arange(N - 195)
    errors = noise(2, 0.001, 0.0001)
    errors[213:] += 0.2
    series = [si("http_errors_ratio", "cart-1", errors), si("memory_bytes", "cart-1", mem)]
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
    causes = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
    assert [metric_name(c.labels) for c in causes] == [
        "memory_bytes",
        "http_errors_ratio",
    ]
    assert causes[0].shape == "ramp" and abs(causes[1].sigma) > abs(causes[0].sigma)
    off = rootcause.RootCauseParams(accumulation=False)
    causes = rank_root_causes(T, series, GRID, params=off, **kw)  # type: ignore[arg-type]
    assert metric_name(causes[0].labels) == "http_errors_ratio"


def test_learned_links_see_who_leads_in_the_baseline() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, 300).cumsum()
    b = np.r_[np.zeros(2), a[:-2]] + rng.normal(0, 0.3, 300)  # b follows a two steps later
    c = rng.normal(0, 1, 300).cumsum()
    links = rootcause.learned_links(np.vstack([a, b, c]), 3)
    assert links[0, 1] > 0.5 and links[1, 0] < 0.3
    assert abs(links[0, 2]) < 0.3 and abs(links[2, 1]) < 0.3


def test_an_hourly_cycle_in_the_baseline_is_not_a_change_and_hides_none() -> None:
    """A strong hourly cycle: carried into the window, the real step (half the swing) stands
    out and the cycle itself is no change; without it, the swing hides the step."""
    t = np.arange(N)
    rng = np.random.default_rng(2)
    cyc = 10 + 3 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 0.1, N)
    stepped = 10 + 3 * np.sin(2 * np.pi * (t + 17) / 60) + rng.normal(0, 0.1, N)
    stepped[210:] += 1.5
    series = [si("cyclic", "a", cyc), si("stepped", "b", stepped)]
    kw = {"window_ms": 30 * STEP, "baseline_ms": 180 * STEP}
    causes = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
    assert [dict(c.labels)["__name__"] for c in causes] == ["stepped"]
    assert causes[0].onset_ms == 210 * STEP
    off = rootcause.RootCauseParams(seasonal_gain=0.0)
    without = rank_root_causes(T, series, GRID, params=off, **kw)  # type: ignore[arg-type]
    assert "stepped" not in [dict(c.labels)["__name__"] for c in without]


def test_many_series_of_one_surge_do_not_outrank_a_fault_that_moves_the_symptoms() -> None:
    """Twelve instances' request rates dip together (one phenomenon seen twelve times, each
    a few sigmas); ten minutes later a database's CPU jumps and its latency follows. The
    support of a change grows with the log of what it explains, so the cluster of small
    correlated changes does not outrank the fault that moved the latency."""
    rng = np.random.default_rng(7)
    common = rng.normal(0, 1.0, N)
    series = []
    for k in range(12):
        rate = 100 + common + rng.normal(0, 0.3, N)
        rate[200:] -= 7.5
        series.append(si("http_requests", f"web-{k}", rate, "web"))
    cpu = noise(1, 0.3, 0.01)
    cpu[210:] += 0.3
    latency = noise(2, 0.05, 0.001)
    latency[212:] += 0.04
    series += [si("db_cpu", "db-1", cpu, "db"), si("db_latency_seconds", "db-1", latency, "db")]
    # relief off: a dip in traffic is relief, which (on) explains nothing; here the dip must
    # explain and be outweighed by support alone
    off = rootcause.RootCauseParams(relief=0.0)
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP, "params": off}
    causes = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
    names = [dict(c.labels)["__name__"] for c in causes]
    assert names.count("http_requests") == 12  # the dip is seen, and linked
    assert any(len(c.followers) >= 5 for c in causes if c.labels in {s.labels for s in series[:12]})
    assert names[0] == "db_cpu"
    assert rootcause._support([1.0, 2.0]) == pytest.approx(np.log1p(3.0))
    on = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=150 * STEP)
    assert dict(on[0].labels)["__name__"] == "db_cpu"  # relief on: the dip explains nothing


def test_a_change_ranks_after_its_explainers_along_the_whole_chain() -> None:
    """c is explained by b, b by a: c ends below b and b below a, whichever order they come
    in and however large c is on its own; a cycle ends (cut where it closes)."""
    after = rootcause._after_explainers
    out = after({3: 9.0, 2: 4.0, 1: 2.0}, {3: [2], 2: [1], 1: []})
    assert out[1] == 2.0 and out[1] > out[2] > out[3]
    loop = after({1: 5.0, 2: 6.0, 3: 7.0}, {1: [3], 2: [1], 3: [2]})
    assert set(loop) == {1, 2, 3} and all(np.isfinite(v) for v in loop.values())
    assert max(loop.values()) <= 7.0


def test_a_cycle_of_changes_ranks_after_what_explains_it_from_outside() -> None:
    """1, 2 and 3 explain one another (a cycle); 0 explains 3 from outside. Cut where a
    depth-first walk closes the cycle, 2 keeps its own score and outranks 0; ranked as one
    phenomenon, the whole cycle ranks after 0, its members by key (onset, role), the score
    deciding only among equal keys (mode 1: the rest after the first; 2: all by key)."""
    raw = {1: 5.0, 2: 9.0, 3: 7.0, 0: 4.0}
    explained: dict[int, list[int]] = {1: [3], 2: [1], 3: [2, 0], 0: []}
    cut = rootcause._after_explainers(raw, explained)
    assert cut[2] > cut[0]
    key = {0: (0, 0), 1: (2, 2), 2: (2, 3), 3: (1, 1)}.__getitem__
    for mode in (1, 2):
        out = after_explainers_by_cycle(raw, explained, key, mode)
        assert out[0] == 4.0 and max(out[1], out[2], out[3]) < out[0]
        assert out[3] > max(out[1], out[2])  # the earliest member of the cycle leads it
        again = after_explainers_by_cycle(dict(reversed(raw.items())), explained, key, mode)
        assert again == out  # whatever order the changes come in
    assert after_explainers_by_cycle(raw, explained, key, 2)[1] > out[2]  # by key, not score
    assert sorted(map(sorted, components([0, 1, 2, 3], explained))) == [[0], [1, 2, 3]]


def test_a_cycle_of_changes_is_ranked_whatever_order_the_series_come_in() -> None:
    """Blind incident 194: a CPU saturation of the payment service's machine moves its latency
    and, through a cycle of same-minute changes, the frontend's. Cut where a depth-first walk
    closes the cycle, the root ranks first or second depending on the order of the series;
    ranked as one phenomenon, it ranks first in either order. (``little_order`` off: with it
    on, the root ranks first in either order even with ``cycles`` 0.)"""
    inc = generate_blind_incident(194)
    grid = Grid(inc.start_ms, inc.step_ms, len(inc.series[0].values))
    n = len(inc.series)

    def rank(cycles: float, reverse: bool) -> int:
        series = list(reversed(inc.series)) if reverse else list(inc.series)
        root = n - 1 - inc.root if reverse else inc.root
        causes = rank_root_causes(
            inc.time_ms,
            series,
            grid,
            window_ms=30 * STEP,
            baseline_ms=180 * STEP,
            params=rootcause.RootCauseParams(cycles=cycles, little_order=0.0),
        )
        return [c.index for c in causes].index(root)

    assert {rank(0.0, False), rank(0.0, True)} == {0, 1}
    assert rank(1.0, False) == rank(1.0, True) == rank(2.0, False) == rank(2.0, True) == 0


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    out = np.zeros(n)
    e = rng.normal(0, 1, n)
    for k in range(1, n):
        out[k] = phi * out[k - 1] + e[k]
    return out


def test_significant_links_find_who_leads_and_control_false_links() -> None:
    """Forty unrelated series sharing a slow daily curve, each with its own strong memory:
    a fixed threshold on step-change correlation links a good share of their pairs by chance,
    the significance test (high-pass, prewhitening, Bartlett + Šidák, Benjamini–Hochberg)
    almost none — and it still finds the one real dependency, in its direction only."""
    rng = np.random.default_rng(11)
    n = 180
    curve = 5 * np.sin(2 * np.pi * (np.arange(n) + 300) / 1440)
    rows = [curve + _ar1(rng, n, 0.9) for _ in range(40)]
    leader = _ar1(rng, n, 0.5)
    follower = np.r_[np.zeros(2), leader[:-2]] + 0.8 * rng.normal(0, 1, n)
    base = np.vstack([*rows, leader, follower])
    a, b = 40, 41
    sig = correlation.significant_links(base, 5, 0.05)
    old = rootcause.learned_links(base, 5) >= rootcause.RootCauseParams().learned_corr
    unrelated = ~np.eye(42, dtype=bool)
    unrelated[a, b] = unrelated[b, a] = False
    assert old[unrelated].mean() > 0.3  # the threshold: a coin toss on unrelated pairs
    assert sig[unrelated].mean() < 0.01
    assert sig[a, b] and not sig[b, a]  # a leads b by two steps, not the reverse
    assert np.all(np.diag(sig))


def _uncoupled_anomaly_case(seed: int, params: rootcause.RootCauseParams) -> bool:
    """Whether the batch job's change explains nothing and the database's explains the API's."""
    rng = np.random.default_rng(seed)
    db = 0.05 + 0.002 * _ar1(rng, N, 0.3)
    db[200:] += 0.02
    api = 0.08 + np.r_[db[0], db[:-1]] + 0.001 * rng.normal(0, 1, N)
    batch = 2.0 + 0.05 * _ar1(rng, N, 0.3)
    batch[199:] += 1.0
    series = [si("db_latency", "db-1", db), si("api_latency", "api-1", api)]
    series.append(si("batch_cpu", "batch-1", batch))
    kw = {"window_ms": 30 * STEP, "baseline_ms": 180 * STEP, "params": params}
    causes = {c.index: c for c in rank_root_causes(T, series, GRID, **kw)}  # type: ignore[arg-type]
    return (
        set(causes) == {0, 1, 2}
        and causes[2].followers == ()
        and [f.index for f in causes[0].followers] == [1]
        and causes[1].explained_by == 0
    )


def test_with_the_significance_test_an_uncoupled_anomaly_explains_nothing() -> None:
    """A database's latency drives an API's latency in the baseline (one step later), then
    steps up, and the API follows; a batch job, coupled to neither, jumps one step before the
    database. With ``link_fdr`` the batch job's change explains nothing across entities and
    the database's explains the API's, in (nearly) every draw of the noise; the threshold on
    step-change correlation (``learned_corr`` 0.1) lets the batch job explain the database
    and the API whenever their noise happens to correlate a little (9 draws of these 10).
    Orphan symptoms off: with them the batch job, the earliest change whose course both
    latencies follow, explains them without any learned link (the rule's known cost)."""
    params = rootcause.RootCauseParams(link_fdr=0.05, orphan=0.0)
    right = sum(_uncoupled_anomaly_case(seed, params) for seed in range(10))
    assert right >= 9


def _batch_and_db(seed: int) -> list[SeriesInput]:
    """A batch job's CPU and a database's CPU share a noisy neighbour in the baseline (their
    step changes correlate); the batch job's CPU jumps, a minute later the database's CPU
    jumps and its latency follows (another cause, in another service)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 1, N)
    batch = 2.0 + 0.05 * shared + 0.02 * rng.normal(0, 1, N)
    batch[199:] += 1.5
    cpu = 0.3 + 0.01 * shared + 0.004 * rng.normal(0, 1, N)
    cpu[200:] += 0.3
    latency = noise(seed + 1, 0.05, 0.001)
    latency[201:] += 0.04
    return [
        si("batch_cpu", "batch-1", batch, "batch"),
        si("db_cpu", "db-1", cpu, "db"),
        si("db_latency_seconds", "db-1", latency, "db"),
    ]


def test_a_resource_of_another_service_moves_only_by_load_or_waiting() -> None:
    """With ``resource_paths`` another service's CPU cannot explain the database's CPU (only
    the load a caller sends, or for a pool the latency it waits on, moves a resource across
    services); without it the coincidence in time makes the batch job the explainer."""
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
    on = rootcause.RootCauseParams(resource_paths=1.0)
    for seed in range(5):
        series = _batch_and_db(seed)
        plain = {c.index: c for c in rank_root_causes(T, series, GRID, **kw)}  # type: ignore[arg-type]
        assert plain[1].explained_by == 0
        causes = {c.index: c for c in rank_root_causes(T, series, GRID, params=on, **kw)}  # type: ignore[arg-type]
        assert causes[1].explained_by is None
        assert 1 not in [f.index for f in causes[0].followers]
        assert [f.index for f in causes[1].followers] == [2]


def test_a_cluster_that_stopped_growing_long_before_the_incident_weighs_less() -> None:
    """A cron job's CPU and latency jumped 27 minutes before the incident and nothing moved
    since; a database's CPU jumped 6 minutes before and its latency followed. With
    ``recency_weight`` the database ranks first; without it the cron job's larger change."""
    cron = noise(1, 10, 0.1)
    cron[192:] += 6.0
    cron_latency = noise(2, 0.2, 0.002)
    cron_latency[193:] += 0.05
    cpu = noise(3, 0.3, 0.01)
    cpu[214:] += 0.15
    latency = noise(4, 0.05, 0.001)
    latency[216:] += 0.02
    series = [
        si("cron_cpu", "cron-1", cron, "cron"),
        si("cron_latency_seconds", "cron-1", cron_latency, "cron"),
        si("db_cpu", "db-1", cpu, "db"),
        si("db_latency_seconds", "db-1", latency, "db"),
    ]
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
    plain = rank_root_causes(T, series, GRID, **kw)  # type: ignore[arg-type]
    recent = rootcause.RootCauseParams(recency_weight=0.4)
    weighed = rank_root_causes(T, series, GRID, params=recent, **kw)  # type: ignore[arg-type]
    assert dict(plain[0].labels)["__name__"] == "cron_cpu"
    assert dict(weighed[0].labels)["__name__"] == "db_cpu"


def test_a_leak_under_way_when_the_window_opens_is_dated_where_it_began() -> None:
    """Memory began to grow (slowing as it nears its limit) 15 minutes before the window; the
    errors of the same instance jump late in the window by far more sigmas. Measured from the
    window start only, the leak is already half way up there (a shift, not a ramp) and the
    errors outrank it; with ``lead`` it is re-measured against the baseline before it began,
    dated there, seen as a ramp and ranked first."""
    start = 175  # the window opens at 190
    mem = noise(1, 1e9, 2e6)
    mem[start:] += 2e8 * (1 - np.exp(-np.arange(N - start) / 20))
    errors = noise(2, 0.001, 0.0001)
    errors[213:] += 0.2
    series = [si("http_errors_ratio", "cart-1", errors), si("memory_bytes", "cart-1", mem)]
    kw = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
    # (exhaustion off: it too would put the leak first, having filled before the errors)
    off = rootcause.RootCauseParams(lead=0.0, exhaustion=0.0)
    plain = rank_root_causes(T, series, GRID, params=off, **kw)  # type: ignore[arg-type]
    assert metric_name(plain[0].labels) == "http_errors_ratio"
    assert metric_name(rank_root_causes(T, series, GRID, **kw)[0].labels) == "memory_bytes"
    assert plain[1].onset_ms == 190 * STEP and plain[1].shape == "shift"
    on = rootcause.RootCauseParams(lead=1.0)
    causes = rank_root_causes(T, series, GRID, params=on, **kw)  # type: ignore[arg-type]
    assert [metric_name(c.labels) for c in causes] == ["memory_bytes", "http_errors_ratio"]
    leak = causes[0]
    assert leak.shape == "ramp" and start * STEP <= leak.onset_ms < 190 * STEP
    assert causes[1].explained_by == 1
    # the evidence still covers the window; the leak is measured against the earlier baseline
    assert leak.window_start_ms == 190 * STEP and leak.z.shape == plain[1].z.shape
    assert abs(leak.sigma) > abs(plain[1].sigma)


def _shared_callee_case() -> list[SeriesInput]:
    """A database's CPU steps up by ~12σ at step 200; two callers' latency, ~40σ each, a step
    and two later. No graph, and the database's CPU never moved with them in the baseline."""
    cpu = noise(21, 0.4, 0.01)
    cpu[200:] += 0.12
    a = noise(22, 0.10, 0.001)
    a[201:] += 0.04
    b = noise(23, 0.20, 0.002)
    b[202:] += 0.08
    return [
        si("checkout_latency_seconds", "api-1", a, "checkout"),
        si("search_latency_seconds", "api-2", b, "search"),
        si("db_cpu_utilisation", "db-1", cpu, "postgres"),
        si("quiet_requests_total", "q-1", noise(24, 50, 1), "quiet"),
    ]


def test_orphan_symptoms_are_explained_by_the_shared_callee_that_moved_first() -> None:
    series = _shared_callee_case()

    def top(params: rootcause.RootCauseParams) -> list[str]:
        causes = rank_root_causes(
            T, series, GRID, window_ms=60 * STEP, baseline_ms=150 * STEP, params=params
        )
        return [metric_name(c.labels) for c in causes]

    # without the option no baseline link joins the database to its callers, and a caller's
    # much larger latency change outranks it
    off = top(rootcause.RootCauseParams(orphan=0.0))
    assert off[0] != "db_cpu_utilisation" and "db_cpu_utilisation" in off
    # the callers' latency has nothing of its own workload to explain it: the database's CPU,
    # which began first and follows one course with both, does, and ranks first
    assert top(rootcause.RootCauseParams())[0] == "db_cpu_utilisation"  # the defaults
    one = rootcause.RootCauseParams(orphan_quorum=1.0)
    for mode in (1.0, 2.0, 3.0):
        assert top(replace(one, orphan=mode))[0] == "db_cpu_utilisation"
    # gain limited as for other links (2×): 40σ is too much for 12σ, nothing is linked
    assert top(replace(one, orphan_gain=2.0))[0] != "db_cpu_utilisation"
    # the explainer's role: CPU is a resource, allowed by both role rules
    for roles in (1.0, 2.0):
        assert top(replace(one, orphan_roles=roles))[0] == "db_cpu_utilisation"
    # a shared dependency reaches both callers when it is every orphan's explainer, or the
    # earliest one (the closest course of the second caller is the first caller's latency):
    # a quorum of two holds, three does not
    for mode in (2.0, 3.0):
        on = top(replace(one, orphan=mode, orphan_quorum=2.0))
        assert on[0] == "db_cpu_utilisation"
        assert top(replace(one, orphan=mode, orphan_quorum=3.0))[0] != on[0]
    assert top(replace(one, orphan=1.0, orphan_quorum=2.0))[0] != "db_cpu_utilisation"


def test_a_symptom_its_own_workload_explains_is_no_orphan() -> None:
    series = _shared_callee_case()
    pool = noise(25, 10, 0.3)
    pool[201:] = 60  # checkout's own pool hit its cap with its latency: it explains it
    series.append(si("checkout_db_connections", "api-1", pool, "checkout"))
    causes = rank_root_causes(
        T,
        series,
        GRID,
        window_ms=60 * STEP,
        baseline_ms=150 * STEP,
        params=rootcause.RootCauseParams(orphan=3.0, orphan_quorum=1.0),
    )
    by = {metric_name(c.labels): c for c in causes}
    # search's latency is still an orphan; checkout's, explained by its own pool, is not
    assert by["search_latency_seconds"].explained_by is not None
    linked = {metric_name(series[f.index].labels) for f in by["db_cpu_utilisation"].followers}
    assert linked == {"search_latency_seconds"}


def _bygone_case(blip_until: int, moved: bool = False) -> list[SeriesInput]:
    """checkout's CPU steps up ~12σ at step 212 and its latency ~15σ a step later (the
    incident, at 220); a batch job's memory jumps ~100σ at step 195 and is back at
    ``blip_until``, moving nothing (``moved``: the batch job's latency with it)."""
    cpu = noise(31, 0.4, 0.01)
    cpu[212:] += 0.12
    latency = noise(32, 0.10, 0.002)
    latency[213:] += 0.03
    memory = noise(33, 2.0, 0.01)
    memory[195:blip_until] += 1.0
    series = [
        si("cpu_utilisation", "api-1", cpu, "checkout"),
        si("latency_seconds", "api-1", latency, "checkout"),
        si("memory_bytes", "batch-1", memory, "batch"),
    ]
    if moved:
        slow = noise(34, 0.5, 0.01)
        slow[196:blip_until] += 0.3
        series.append(si("batch_latency_seconds", "batch-1", slow, "batch"))
    return series


def test_a_change_that_came_and_went_before_the_alert_without_moving_a_symptom_ranks_after() -> (
    None
):
    def top(blip_until: int, bygone: float, moved: bool = False) -> str:
        causes = rank_root_causes(
            T,
            _bygone_case(blip_until, moved),
            GRID,
            window_ms=30 * STEP,
            baseline_ms=150 * STEP,
            params=rootcause.RootCauseParams(bygone=bygone),
        )
        return metric_name(causes[0].labels)

    # option off: the batch job's large blip outranks the CPU step that moved the latency
    assert top(198, 0.0) == "memory_bytes"
    # on: the blip was over long before the alert and moved no symptom, so it is another event
    for level in (0.2, 0.5):
        assert top(198, level) == "cpu_utilisation"
    # still departed at the incident time it is present, whatever it moved: not demoted
    assert top(N, 0.5) == "memory_bytes"
    # over, but it moved a symptom (its own latency): part of what is wrong, not demoted
    assert top(198, 0.5, moved=True) == "memory_bytes"


def _path_corr_reference(z: np.ndarray, onset: np.ndarray, i: int, j: int) -> float:
    """One pair at a time, with ``np.corrcoef`` (how the ranking computed it before it was
    vectorised)."""
    d = int(onset[j] - onset[i])
    w = z.shape[1]
    if abs(d) >= w - 2:
        return -1.0
    a = z[i, : w - d] if d >= 0 else z[i, -d:]
    b = z[j, d:] if d >= 0 else z[j, : w + d]
    if np.std(a) == 0 or np.std(b) == 0:
        return -1.0
    return float(abs(np.corrcoef(a, b)[0, 1]))


def test_vectorised_path_correlations_match_one_pair_at_a_time() -> None:
    rng = np.random.default_rng(3)
    w = 40
    z = np.cumsum(rng.normal(size=(60, w)), axis=1)
    z[5] = 2.0  # constant: no course to follow
    z[7:9] = rng.normal(0, 0.1, size=(2, w))
    z[7, 10:] += 30.0  # one step follows another
    z[8, 14:] += 12.0
    onset = rng.integers(-5, w, size=60)
    onset[7], onset[8], onset[9] = 10, 14, 3 * w  # 9: too far from the others to overlap
    i, j = (a.reshape(-1) for a in np.meshgrid(np.arange(60), np.arange(60), indexing="ij"))
    fast = path_corrs(z, onset, i, j)
    slow = np.array(
        [_path_corr_reference(z, onset, int(a), int(b)) for a, b in zip(i, j, strict=True)]
    )
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert fast[7 * 60 + 8] > 0.99  # a step follows a step at the right delay
    assert np.all(fast[5 * 60 : 6 * 60] == -1.0)
    assert np.flatnonzero(fast[9 * 60 : 10 * 60] != -1.0).tolist() == [9]  # only itself


def test_a_series_constant_before_is_told_by_its_value_not_an_astronomical_sigma() -> None:
    # a fresh host's node_memory_AnonHugePages_bytes: 0 for hours, then one 2 MB huge page.
    # Over no spread at all its σ was 5.9e18 ("saturated (onset 15:39:00, 5872025600000…σ)");
    # the sentence says what it was instead, and the cause says its σ is no measure
    pages = np.zeros(N)
    pages[205:] = 2 * 1024 * 1024
    latency = noise(2, 0.05, 0.001)
    latency[205:] += 0.04
    series = [
        si("node_memory_AnonHugePages_bytes", "vm", pages),
        si("request_latency_seconds", "vm", latency),
    ]
    causes = rank_root_causes(T, series, GRID, window_ms=30 * STEP, baseline_ms=100 * STEP)
    by_name = {metric_name(c.labels): c for c in causes}
    flat = by_name["node_memory_AnonHugePages_bytes"]
    assert flat.constant_before and "constant at 0 before" in flat.explanation
    assert "σ" not in flat.explanation.split(";")[0].split(" after ")[-1]
    noisy = by_name["request_latency_seconds"]
    assert not noisy.constant_before
    if noisy.explained_by is None:  # told as its own cause: with its σ
        assert "σ" in noisy.explanation


def test_one_count_on_a_series_that_was_zero_is_no_change() -> None:
    # the demo's incident, asked on one end time in two: a latency bucket (le="0.005") that
    # counted nothing for hours counts one fast request before the incident: over a spread
    # of 1e-12 that was 1e12σ and outranked the slow replica. On its grid (a count: 1) it is
    # 3.5σ, no change; ten errors a minute where there were none are still a change.
    pool = noise(1, 10, 0.5)
    pool[205:] = 40
    bucket = np.zeros(N)
    bucket[195] = 1.0
    errors = np.zeros(N)
    errors[207:] = 10.0
    series = [
        si("http_request_duration_seconds_bucket", "search-1", bucket, "search"),
        si("db_connections", "db-1", pool, "postgres"),
        si("http_errors", "search-1", errors, "search"),
    ]
    kwargs = {"window_ms": 30 * STEP, "baseline_ms": 100 * STEP}
    names = [metric_name(c.labels) for c in rank_root_causes(T, series, GRID, **kwargs)]  # type: ignore[arg-type]
    assert names[0] == "db_connections" and "http_errors" in names
    assert "http_request_duration_seconds_bucket" not in names
    off = RootCauseParams(grid_floor=0.0)
    before = rank_root_causes(T, series, GRID, params=off, **kwargs)  # type: ignore[arg-type]
    was = [metric_name(c.labels) for c in before]
    assert was.index("http_request_duration_seconds_bucket") < was.index("db_connections")


@pytest.mark.parametrize(
    ("values", "grid"),
    [
        ([0.0, 1.0, 3.0], 1.0),  # counts
        ([0.0], 1.0),  # only ever 0: taken as a count
        ([0.35, 0.36], 0.01),
        ([0.1, 0.2, 0.3], 0.1),  # 0.3 is not a float multiple of 0.1, but on its grid
        ([0.5, 0.5000001], 1e-6),  # a float: its 6th significant digit, no finer
        ([12345678.0], 100.0),  # never finer than the 6th significant digit
        ([np.nan, 2.0], 1.0),
        # a tiny value beside a huge one: the huge one over the tiny unit overflows
        # (found by hypothesis in CI); never finer than the tiny one's 6th digit
        ([1e-300, 1e10], 1e-305),
    ],
)
def test_value_grid(values: list[float], grid: float) -> None:
    assert value_grid(np.array(values)) == pytest.approx(grid)
