"""The analyze APIs (correlations, root cause, change impact) over a real DuckDB store."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.signal import lfilter

from perfintel.batch import SampleBatch
from perfintel.bench.incidents import generate_incident
from perfintel.model import label_set

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
NOW = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
CORR = "/api/v1/performance/analyze/correlations"
ROOT = "/api/v1/performance/analyze/root-cause"
CHANGE = "/api/v1/performance/analyze/change-impact"


def put(client: TestClient, labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> None:
    client.app.state.store.append(SampleBatch.from_arrays(label_set(labels), ts, vals))  # type: ignore[attr-defined]


def names(field: str, error: str) -> bool:
    """Whether an error message names the field (either quote style)."""
    return f"'{field}'" in error or f'"{field}"' in error


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    return np.asarray(lfilter([1.0], [1.0, -phi], rng.normal(0, sd, n)))


# -- correlations ------------------------------------------------------------------------------


@pytest.fixture
def lagged(client: TestClient) -> tuple[TestClient, list[int]]:
    """A cause and five effects that follow it by known lags (minutes), and two unrelated
    seasonal series, one day of one-minute samples."""
    rng = np.random.default_rng(11)
    n = 1440
    ts = NOW - DAY + MIN * np.arange(n)
    day = np.sin(2 * np.pi * np.arange(n) / n)
    cause = 50 + 10 * day + ar1(rng, n, 0.9, 1.0)
    put(client, {"__name__": "cause_load", "host": "a"}, ts, cause)
    lags = [2, 5, 9, 14, 21]
    for k, lag in enumerate(lags):
        eff = 3 * np.r_[np.full(lag, cause[0]), cause[:-lag]] + 20 * day + ar1(rng, n, 0.7, 2.0)
        put(client, {"__name__": "effect_latency", "host": f"e{k}"}, ts, eff)
    for k in range(2):
        phase = rng.uniform(0, 2 * np.pi)
        other = 100 + 30 * np.sin(2 * np.pi * np.arange(n) / n + phase) + ar1(rng, n, 0.8, 1.0)
        put(client, {"__name__": "seasonal_other", "host": f"s{k}"}, ts, other)
    return client, lags


def test_correlations_rank_the_cause_first_and_recover_lags(
    lagged: tuple[TestClient, list[int]],
) -> None:
    client, lags = lagged
    body = {
        "selectors": ["cause_load", "effect_latency", "seasonal_other"],
        "start": (NOW - DAY) / 1000,
        "end": (NOW - MIN) / 1000,
        "max_lag": "30m",
        "limit": 1000,
    }
    r = client.post(CORR, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["step_seconds"] == 60 and data["source"] in ("raw", f"tier:{5 * MIN}")
    names = [s["labels"]["__name__"] + s["labels"]["host"] for s in data["series"]]
    assert data["leaders"][0]["labels"] == {"__name__": "cause_load", "host": "a"}
    cause = names.index("cause_loada")
    for k, lag in enumerate(lags):
        e = names.index(f"effect_latencye{k}")
        (pair,) = [p for p in data["pairs"] if {p["a"], p["b"]} == {cause, e}]
        # lag > 0: b follows a
        seen = pair["lag_seconds"] if pair["a"] == cause else -pair["lag_seconds"]
        assert abs(seen - 60 * lag) <= 60 and pair["significant"]
    s0, s1 = names.index("seasonal_others0"), names.index("seasonal_others1")
    (pair,) = [p for p in data["pairs"] if {p["a"], p["b"]} == {s0, s1}]
    assert not pair["significant"]
    m = np.array(data["matrix"]["xcorr"], dtype=float)
    assert m.shape == (len(names), len(names)) and np.allclose(m, m.T)
    assert data["pairs_tested"] == len(names) * (len(names) - 1) // 2


def test_correlations_with_a_target_and_bad_input(lagged: tuple[TestClient, list[int]]) -> None:
    client, _ = lagged
    body = {
        "target": 'effect_latency{host="e0"}',
        "selectors": ["cause_load"],
        "start": (NOW - DAY) / 1000,
        "end": (NOW - MIN) / 1000,
        "matrix": False,
    }
    r = client.post(CORR, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["target"] == 0 and data["matrix"] is None
    assert data["series"][0]["labels"]["host"] == "e0"
    for change, field in (
        ({"alpha": 2}, "alpha"),
        ({"max_lag": "soon"}, "max_lag"),
        ({"step": "-1m"}, "step"),
        ({"selectors": ["cause{"]}, "selectors.0"),
        ({"colour": "red"}, "colour"),
    ):
        r = client.post(CORR, json={**body, **change})
        assert r.status_code == 400 and names(field, r.json()["error"]), (change, r.text)
    r = client.post(CORR, json={"start": 0, "end": 100})
    assert r.status_code == 400 and "selectors" in r.json()["error"]
    r = client.post(CORR, json={**body, "target": "nothing_here"})
    assert r.status_code == 404


def test_correlations_of_promql_expressions(lagged: tuple[TestClient, list[int]]) -> None:
    """Expressions are evaluated on the grid and each result is named by its expression:
    two expressions over one series are two series (they would share their labels)."""
    client, lags = lagged
    body = {
        "selectors": ['cause_load{host="a"} * 2', 'cause_load{host="a"} + 1', "effect_latency"],
        "start": (NOW - DAY) / 1000,
        "end": (NOW - MIN) / 1000,
        "limit": 1000,
    }
    r = client.post(CORR, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    called = [s["labels"]["__name__"] for s in data["series"]]
    assert called[:2] == ['cause_load{host="a"} * 2', 'cause_load{host="a"} + 1']
    assert data["series"][0]["labels"]["host"] == "a"
    (same,) = [p for p in data["pairs"] if {p["a"], p["b"]} == {0, 1}]
    assert same["lag_seconds"] == 0 and same["pearson"] > 0.999 and same["significant"]
    e0 = called.index("effect_latency")  # the first effect, 2 minutes behind the cause
    (pair,) = [p for p in data["pairs"] if {p["a"], p["b"]} == {0, e0}]
    assert pair["significant"] and abs(pair["lag_seconds"]) == 60 * lags[0]
    r = client.post(CORR, json={**body, "selectors": ["rate(cause_load[5m]"]})
    assert r.status_code == 400 and names("selectors.0", r.json()["error"]), r.text


def test_series_that_cannot_be_correlated_say_why(client: TestClient) -> None:
    """A host collected for minutes, a flat gauge and an evenly growing counter: no pair is
    tested, and the answer says why for each instead of an empty table."""
    ts = NOW - 5 * MIN + MIN * np.arange(5)
    put(client, {"__name__": "young_load", "host": "new"}, ts, np.array([1.0, 3, 2, 5, 4]))
    ts = NOW - HOUR + MIN * np.arange(60)
    put(client, {"__name__": "flat_gauge", "host": "a"}, ts, np.full(60, 7.0))
    put(client, {"__name__": "even_total", "host": "a"}, ts, 10.0 * np.arange(60))
    put(client, {"__name__": "moving_gauge", "host": "a"}, ts, np.sin(np.arange(60.0)))
    body = {
        "selectors": ["young_load", "flat_gauge", "even_total", "moving_gauge"],
        "start": (NOW - HOUR) / 1000,
        "end": NOW / 1000,
    }
    r = client.post(CORR, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    why = {s["labels"]["__name__"]: (s["usable"], s["reason"]) for s in data["series"]}
    assert why["young_load"] == (False, "only 5 points in the range (at least 8 needed)")
    assert why["flat_gauge"] == (False, "constant in the range")
    assert why["even_total"] == (False, "a counter that grew evenly")
    assert why["moving_gauge"] == (True, None)
    assert data["pairs_tested"] == 0
    assert data["why_no_pairs"] == "1 of 4 series can be analysed: a pair needs two"


# -- root cause -----------------------------------------------------------------------------------


def load_incident(client: TestClient, seed: int) -> tuple[dict[str, str], int, int]:
    """A generated incident moved to end an hour ago; ``(root labels, time, onset)`` in ms."""
    inc = generate_incident(seed)
    shift = (NOW - 2 * HOUR) - int(inc.timestamps[-1])
    ts = inc.timestamps + shift
    for s in inc.series:
        ok = np.isfinite(s.values)
        client.app.state.store.append(  # type: ignore[attr-defined]
            SampleBatch.from_arrays(s.labels, ts[ok], s.values[ok])
        )
    return dict(inc.series[inc.root].labels), inc.time_ms + shift, inc.onset_ms + shift


def test_root_cause_ranks_the_injected_fault_first(client: TestClient) -> None:
    root, at, onset = load_incident(client, 1002)  # a memory leak that slows its service
    r = client.post(ROOT, json={"selector": '{service=~".+"}', "time": at / 1000, "limit": 5})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["candidates"] > 50 and 1 <= len(data["causes"]) <= 5
    top = data["causes"][0]
    assert top["labels"] == root and top["labels"]["__name__"] == "memory_bytes"
    assert abs(top["onset_unix"] * 1000 - onset) <= 5 * MIN
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", top["onset"])
    # "latency of X rose 2 min after memory_bytes on Y grew steadily (onset 12:03:10, 9.3σ)"
    pattern = r" (after|as) memory_bytes on \S+ grew steadily \(onset \d\d:\d\d:\d\d, [\d.]+σ\)"
    assert re.search(pattern, top["explanation"]), top["explanation"]
    assert top["sigma"] > 6 and top["shape"] == "ramp" and top["followers"]
    assert top["constant_before"] is False  # a noisy baseline: its σ is a measure
    ev = top["evidence"]
    assert len(ev["values"]) == len(ev["expected"]) == len(ev["z"]) > 10
    scores = [c["score"] for c in data["causes"]]
    assert scores == sorted(scores, reverse=True)


def test_root_cause_with_declared_dependencies_and_rfc3339(client: TestClient) -> None:
    inc = generate_incident(1005)
    root, at, _ = load_incident(client, 1005)
    deps = [
        {"caller": inc.services[a], "callee": inc.services[b]}
        for a, cs in enumerate(inc.callees)
        for b in cs
    ]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at / 1000))
    r = client.post(
        ROOT,
        json={"selector": '{service=~".+"}', "time": when, "dependencies": deps, "limit": 3},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["causes"][0]["labels"] == root


def test_root_cause_grid_follows_the_scrape_interval(client: TestClient) -> None:
    """15-second data is analysed on a 15-second grid: a pool that saturates 30 s into a
    minute, and a latency that rises 30 s later, are dated to the step and apart (on a
    1-minute grid both begin in one bucket)."""
    rng = np.random.default_rng(5)
    n = 4 * 60 * 4  # 4 hours of 15 s samples
    ts = NOW - 3 * HOUR + 15_000 * np.arange(n)
    fault = n - 78  # 19.5 minutes before the end, 30 s past a minute
    assert (ts[fault] // 1000) % 60 == 30
    pool = 20 + ar1(rng, n, 0.5, 0.5)
    pool[fault:] += 15
    put(client, {"__name__": "db_connections_in_use", "service": "db"}, ts, pool)
    lat = 0.2 + 0.01 * ar1(rng, n, 0.5, 1.0)
    lat[fault + 2 :] += 0.3
    put(client, {"__name__": "latency_seconds", "service": "checkout"}, ts, lat)
    for k in range(6):
        put(client, {"__name__": "cpu_usage", "service": f"s{k}"}, ts, 0.5 + ar1(rng, n, 0.7, 0.02))
    at = int(ts[fault + 8])
    r = client.post(ROOT, json={"selector": '{service=~".+"}', "time": at / 1000})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["step_seconds"] == 15
    onset = {c["labels"]["__name__"]: c["onset_unix"] * 1000 for c in data["causes"]}
    assert abs(onset["db_connections_in_use"] - ts[fault]) <= 15_000
    assert onset["latency_seconds"] - onset["db_connections_in_use"] == 30_000
    r = client.post(ROOT, json={"selector": '{service=~".+"}', "time": at / 1000, "step": "1m"})
    assert r.status_code == 200 and r.json()["data"]["step_seconds"] == 60


@pytest.mark.parametrize("window", ["30m", "6m"])
def test_root_cause_asked_as_the_fault_begins_finds_a_root_dated_just_after(
    client: TestClient, window: str
) -> None:
    """Asked at a fault's injection (what another tool may pass as the time): the pool it fills
    is dated two minutes later and its service's latency a minute after that. A cause begins
    no later than the first symptom: the pool is found, not the smaller shift of another
    service's CPU 20 minutes before the asked time (with a 6-minute window too, whose third
    after the time, 2 minutes, does not reach the latency: the data are read past it)."""
    rng = np.random.default_rng(5)
    n = 4 * 60  # 4 hours of minutes
    ts = NOW - 3 * HOUR + MIN * np.arange(n)
    fault = n - 20
    pool = 20 + ar1(rng, n, 0.5, 0.5)
    pool[fault + 2 :] += 30
    put(client, {"__name__": "db_connections_in_use", "service": "db"}, ts, pool)
    lat = 0.2 + 0.01 * ar1(rng, n, 0.5, 1.0)
    lat[fault + 3 :] += 0.3
    put(client, {"__name__": "latency_seconds", "service": "db"}, ts, lat)
    cpu = 0.5 + ar1(rng, n, 0.7, 0.02)
    cpu[fault - 20 :] += 0.3
    put(client, {"__name__": "cpu_usage", "service": "s0"}, ts, cpu)
    for k in range(1, 6):
        put(client, {"__name__": "cpu_usage", "service": f"s{k}"}, ts, 0.5 + ar1(rng, n, 0.7, 0.02))
    body = {"selector": '{service=~".+"}', "time": int(ts[fault]) / 1000, "window": window}
    r = client.post(ROOT, json=body)
    assert r.status_code == 200, r.text
    causes = r.json()["data"]["causes"]
    assert causes[0]["labels"]["__name__"] == "db_connections_in_use", causes
    assert causes[0]["onset_unix"] * 1000 == ts[fault + 2]


def test_root_cause_asked_at_the_end_of_the_data_sees_the_root_begun_before_the_window(
    client: TestClient,
) -> None:
    """Asked at the end of an incident's data (what another tool may pass as the time): a pool
    fills 33 minutes before it, 3 before the 30-minute window opens, and two minutes later the
    pool's latency and its caller's errors rise, just before the window too; another service's
    memory grows over the last 12 minutes. The symptoms are already departed as the window
    opens: it opens back to their story, and the pool is found, dated where it filled, before
    the symptoms it explains."""
    rng = np.random.default_rng(4)
    n = 4 * 60  # 4 hours of minutes
    ts = NOW - 3 * HOUR + MIN * np.arange(n)
    end = n - 1
    pool = 20 + ar1(rng, n, 0.5, 0.5)
    pool[end - 33 :] += 8
    drive = np.zeros(n)
    drive[end - 31 :] = 1.0
    lat = 0.2 + 0.01 * ar1(rng, n, 0.5, 1.0) + 0.3 * drive
    err = 1 + ar1(rng, n, 0.5, 0.2) + 5 * drive
    mem = 5e8 * (1 + 0.01 * ar1(rng, n, 0.9, 1.0))
    mem[end - 12 :] *= np.linspace(1, 1.5, 13)
    for name, service, v in (
        ("db_connections_in_use", "db", pool),
        ("latency_seconds", "db", lat),
        ("errors_total", "web", err),
        ("memory_bytes", "s0", mem),
        *(("cpu_usage", f"s{k}", 0.5 + ar1(rng, n, 0.7, 0.02)) for k in range(1, 6)),
    ):
        put(client, {"__name__": name, "service": service}, ts, v)
    body = {"selector": '{service=~".+"}', "time": int(ts[end]) / 1000}
    r = client.post(ROOT, json=body)
    assert r.status_code == 200, r.text
    causes = r.json()["data"]["causes"]
    top = causes[0]
    assert top["labels"]["__name__"] == "db_connections_in_use", causes
    assert top["onset_unix"] * 1000 == ts[end - 33]
    assert causes[1]["labels"]["__name__"] == "latency_seconds"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"window": "later"}, "window"),
        ({"baseline": "0s"}, "baseline"),
        ({"limit": 0}, "limit"),
        ({"time": "yesterday"}, "time"),
        ({"selector": "x{"}, "selector"),
        ({"dependencies": [{"caller": "a"}]}, "dependencies.0.callee"),
        ({"window": "1m"}, "window"),
        ({"baseline": "3m", "step": "1m"}, "baseline"),
    ],
)
def test_root_cause_bad_input_is_400_naming_the_field(
    client: TestClient, change: dict[str, object], field: str
) -> None:
    body = {"selector": "up", "time": NOW / 1000, **change}
    r = client.post(ROOT, json=body)
    assert r.status_code == 400, r.text
    assert names(field, r.json()["error"])


def test_root_cause_of_a_new_host_says_its_series_have_no_baseline(client: TestClient) -> None:
    """Ten minutes of a new host's series asked about with the default 3-hour baseline: no
    cause made of a baseline filled in from first samples; the answer says why, and an old
    series beside them is still ranked."""
    rng = np.random.default_rng(2)
    ts = NOW - 10 * MIN + MIN * np.arange(11)
    for name in ("node_load1", "node_memory_Active_bytes", "node_forks_total"):
        put(client, {"__name__": name, "instance": "new"}, ts, rng.normal(5, 1, ts.size))
    body = {"selector": '{instance="new"}', "time": NOW / 1000}
    r = client.post(ROOT, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["causes"] == [] and data["without_history"] == data["candidates"] == 3
    assert data["note"].startswith("every candidate was first sampled after ")
    old_ts = NOW - 4 * HOUR + MIN * np.arange(4 * 60 + 1)
    old = rng.normal(5, 0.1, old_ts.size)
    old[-8:] += 3  # a real change of a series with history
    put(client, {"__name__": "node_load1", "instance": "old"}, old_ts, old)
    r = client.post(ROOT, json={**body, "selector": '{instance=~"new|old"}'})
    data = r.json()["data"]
    assert [c["labels"]["instance"] for c in data["causes"]] == ["old"]
    assert data["without_history"] == 3 and data["candidates"] == 4
    assert data["note"].startswith("3 of 4 candidates were first sampled after ")


def test_root_cause_an_hour_into_collection_measures_against_what_was_recorded(
    client: TestClient,
) -> None:
    """A newcomer's first incident, 80 minutes after perfintel began collecting, asked with
    the default 3-hour baseline: the data begin inside it, which is no series born late; the
    baseline is the 50 minutes recorded before the window, and the answer says so."""
    rng = np.random.default_rng(5)
    ts = NOW - 80 * MIN + MIN * np.arange(81)
    pool = rng.normal(10, 0.5, ts.size)
    pool[-12:] = 40  # saturated 11 minutes before the time asked
    latency = rng.normal(0.1, 0.002, ts.size)
    latency[-9:] += 0.05
    put(client, {"__name__": "db_pool_in_use", "instance": "fresh-db"}, ts, pool)
    put(client, {"__name__": "latency_seconds", "instance": "fresh-api"}, ts, latency)
    body = {"selector": '{instance=~"fresh-.*"}', "time": NOW / 1000}
    r = client.post(ROOT, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [c["labels"]["instance"] for c in data["causes"]] == ["fresh-db", "fresh-api"]
    assert data["without_history"] == 0
    assert data["note"].startswith("the data begin at ") and "the 50 min recorded" in data["note"]


def test_root_cause_without_series_is_404(client: TestClient) -> None:
    r = client.post(ROOT, json={"selector": "nothing_here", "time": NOW / 1000})
    assert r.status_code == 404 and "nothing_here" in r.json()["error"]


# -- change impact ----------------------------------------------------------------------------


@pytest.fixture
def deployed(client: TestClient) -> tuple[TestClient, int]:
    """Three days of one-minute latency with a daily cycle; a deploy (``deploy_info`` of a new
    version appearing) 2 hours ago raises it by 20 %; memory does not change."""
    rng = np.random.default_rng(5)
    n = 3 * 1440 + 120
    ts = NOW - (n - 1) * MIN + MIN * np.arange(n)
    change = int(ts[-120])
    day = np.sin(2 * np.pi * np.arange(n) / 1440)
    latency = 0.2 * (1 + 0.2 * day) * np.exp(ar1(rng, n, 0.5, 0.03))
    latency[-120:] *= 1.2
    memory = 5e8 * (1 + 0.05 * day) * np.exp(ar1(rng, n, 0.5, 0.01))
    base = {"service": "checkout", "instance": "c-0"}
    put(client, {"__name__": "latency_seconds", **base}, ts, latency)
    put(client, {"__name__": "memory_bytes", **base}, ts, memory)
    old = ts < change
    put(client, {"__name__": "deploy_info", **base, "version": "1.0"}, ts[old], np.ones(old.sum()))
    put(
        client,
        {"__name__": "deploy_info", **base, "version": "1.1"},
        ts[~old],
        np.ones((~old).sum()),
    )
    return client, change


def test_change_impact_from_an_annotation(deployed: tuple[TestClient, int]) -> None:
    client, change = deployed
    body = {
        "selector": '{__name__=~"latency_seconds|memory_bytes",service="checkout"}',
        "annotation": 'deploy_info{service="checkout"}',
        "after": "1h",
        "end": NOW / 1000,
    }
    r = client.post(CHANGE, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["change_unix"] * 1000 == change
    assert data["step_seconds"] == 60 and data["after_steps"] == 60
    res = {x["labels"]["__name__"]: x for x in data["results"]}
    lat, mem = res["latency_seconds"], res["memory_bytes"]
    assert lat["significant"] and lat["method"] == "conformal" and lat["calibration"] >= 9
    assert lat["lower"] <= lat["effect"] <= lat["upper"]
    assert 0.1 < lat["relative"] < 0.3
    assert lat["relative_lower"] > 0
    # no effect on memory: a small estimate (calling it significant happens on 10 % of
    # no-effect changes by construction; benchmarks/change_impact.py measures that rate)
    assert abs(mem["relative"]) < 0.03 and mem["upper"] - mem["lower"] < 0.06 * mem["expected"]
    assert len(lat["counterfactual"]) == len(lat["observed_values"]) == len(lat["timestamps"]) == 60


def test_change_impact_at_a_given_time_and_bad_input(deployed: tuple[TestClient, int]) -> None:
    client, change = deployed
    body = {"selector": 'latency_seconds{service="checkout"}', "change_time": change / 1000}
    r = client.post(CHANGE, json={**body, "after": "30m"})
    assert r.status_code == 200, r.text
    (res,) = r.json()["data"]["results"]
    assert res["significant"] and res["effect"] > 0
    r = client.post(CHANGE, json={"selector": "latency_seconds"})
    assert r.status_code == 400 and "change_time" in r.json()["error"]
    for change_, field in (({"level": 1.5}, "level"), ({"after": "zz"}, "after")):
        r = client.post(CHANGE, json={**body, **change_})
        assert r.status_code == 400 and names(field, r.json()["error"])
    r = client.post(
        CHANGE, json={"selector": "latency_seconds", "annotation": "no_such_annotation"}
    )
    assert r.status_code == 404 and "no_such_annotation" in r.json()["error"]


def test_change_impact_of_a_promql_expression(deployed: tuple[TestClient, int]) -> None:
    """A mean latency is an expression (rate of a _sum over rate of its _count): evaluated at
    every step, its results assessed as gauges."""
    client, change = deployed
    body = {
        "selector": 'latency_seconds{service="checkout"} * 1000',  # in milliseconds
        "change_time": change / 1000,
        "after": "1h",
    }
    r = client.post(CHANGE, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["source"] == "expression"
    (res,) = data["results"]
    assert res["labels"] == {"service": "checkout", "instance": "c-0"}  # no name: computed
    assert res["significant"] and 0.1 < res["relative"] < 0.3 and res["expected"] > 100
    for bad in ("rate(latency_seconds[5m]", "latency_seconds +"):
        r = client.post(CHANGE, json={**body, "selector": bad})
        assert r.status_code == 400 and names("selector", r.json()["error"]), r.text
    r = client.post(CHANGE, json={**body, "selector": "absent_metric * 2"})
    assert r.status_code == 404 and "absent_metric * 2" in r.json()["error"]


def test_correlations_refuse_more_series_than_they_take(client: TestClient) -> None:
    ts = NOW - HOUR + MIN * np.arange(60)
    rng = np.random.default_rng(0)
    for k in range(120):
        put(client, {"__name__": "many_a", "k": str(k)}, ts, rng.normal(size=60))
        put(client, {"__name__": "many_b", "k": str(k)}, ts, rng.normal(size=60))
    body = {"start": (NOW - HOUR) / 1000, "end": NOW / 1000}
    r = client.post(CORR, json={**body, "selectors": ["many_a", "many_b"]})
    assert r.status_code == 422 and "200" in r.json()["error"], r.text
    r = client.post(CORR, json={**body, "selectors": ['{__name__=~"many_.+"}']})
    assert r.status_code == 422 and "200" in r.json()["error"], r.text
    r = client.post(CORR, json={**body, "selectors": ["many_a"], "limit": 5})
    assert r.status_code == 200 and len(r.json()["data"]["pairs"]) == 5


def test_every_analysis_route_needs_the_read_scope(tmp_path: Path) -> None:
    from perfintel.api.app import create_app
    from perfintel.config import load_settings

    tokens = [
        {"token": "writer-token-0123456789", "scopes": ["write"]},
        {"token": "reader-token-0123456789", "scopes": ["read"]},
    ]
    settings = load_settings(
        overrides={"data_dir": tmp_path / "d", "auth": {"tokens": tokens}}, env={}
    )
    bodies = {
        CORR: {"selectors": ["x"]},
        ROOT: {"selector": "x", "time": NOW / 1000},
        CHANGE: {"selector": "x", "change_time": NOW / 1000},
        "/api/v1/performance/optimize/recommendations": {"window": "1d"},
    }
    with TestClient(create_app(settings, collectors=False)) as c:
        for path, body in bodies.items():
            assert c.post(path, json=body).status_code == 401, path
            writer = {"Authorization": "Bearer writer-token-0123456789"}
            assert c.post(path, json=body, headers=writer).status_code == 403, path
            reader = {"Authorization": "Bearer reader-token-0123456789"}
            assert c.post(path, json=body, headers=reader).status_code in (200, 404), path
