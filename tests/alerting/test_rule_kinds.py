"""perfintel's rule kinds on generated data: each triggers when it should and says why."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.alerting.rules.files import parse_rules
from perfintel.alerting.rules.kinds import KindContext, kinds
from perfintel.alerting.rules.kinds.base import output_selector
from perfintel.alerting.rules.kinds.trend import trend_test, window_summary
from perfintel.batch import SampleBatch
from perfintel.model import label_set
from perfintel.query.promql.engine import Engine
from perfintel.storage.memory import MemoryStore

DAY = 86400.0
T0 = 1_767_225_600.0


def put(store: MemoryStore, labels: dict[str, str], t: np.ndarray, v: np.ndarray) -> None:
    store.append(
        SampleBatch.from_arrays(
            label_set(labels), (t * 1000).astype(np.int64), v.astype(np.float64)
        )
    )


def findings(store: MemoryStore, rule_yaml: str, now: float) -> list:  # type: ignore[type-arg]
    spec = parse_rules("groups:\n  - name: g\n    rules:\n" + rule_yaml, "k.yml")[0].rules[0]
    ctx = KindContext(store, Engine(store), int(now * 1000))
    return kinds()[spec.kind].evaluate(spec.params, ctx)


def test_output_selector_uses_vmanomaly_names() -> None:
    assert output_selector('http_latency{job="api"}', "anomaly_score") == (
        '{__name__="anomaly_score",for="http_latency",job="api"}'
    )


def test_anomaly_score_at_or_above_the_threshold() -> None:
    st = MemoryStore()
    t = T0 + 60 * np.arange(10)
    for inst, score in (("a", 1.5), ("b", 0.7), ("c", 0.2)):
        base = {"instance": inst, "for": "latency"}
        put(st, {"__name__": "anomaly_score", **base}, t, np.full(10, score))
        put(st, {"__name__": "yhat", **base}, t, np.full(10, 100.0))
        put(st, {"__name__": "yhat_lower", **base}, t, np.full(10, 90.0))
        put(st, {"__name__": "yhat_upper", **base}, t, np.full(10, 110.0))
        put(st, {"__name__": "latency", "instance": inst}, t, np.full(10, 130.0))
    rule = "      - alert: A\n        kind: anomaly\n        selector: latency\n        threshold: 1\n        resolve_threshold: 0.5\n"
    got = {f.labels["instance"]: f for f in findings(st, rule, t[-1])}
    assert set(got) == {"a", "b"}
    assert got["a"].trigger and not got["a"].held
    assert got["b"].held and not got["b"].trigger  # hysteresis: keeps an active alert only
    e = got["a"].explanation
    assert (e["anomaly_score"], e["value"], e["expected"]) == (1.5, 130.0, 100.0)
    assert e["band"] == {"lower": 90.0, "upper": 110.0}


def _check_crossing(e: dict[str, object], now: float) -> None:
    c = e["crossing"]
    assert isinstance(c, dict)
    assert c["earliest"] is not None and c["earliest"] >= now
    if c["expected"] is not None:
        assert c["earliest"] <= c["expected"]
        if c["latest"] is not None:
            assert c["expected"] <= c["latest"]
    assert 0 < float(e["confidence"]) <= 1  # type: ignore[arg-type]


def test_threshold_approaching_on_a_ramp_and_not_on_a_flat_series() -> None:
    st = MemoryStore()
    t = T0 + 3600 * np.arange(24 * 10)
    rng = np.random.default_rng(1)
    put(
        st,
        {"__name__": "used_ratio", "m": "ramp"},
        t,
        0.2 + 0.7 * (t - T0) / (t[-1] - T0 + 6 * 3600) + rng.normal(0, 0.003, t.size),
    )
    put(st, {"__name__": "used_ratio", "m": "flat"}, t, 0.5 + rng.normal(0, 0.01, t.size))
    rule = (
        "      - alert: A\n        kind: threshold_approaching\n        expr: used_ratio\n"
        "        threshold: 0.9\n        within: 12h\n        step: 1h\n        history: 10d\n"
    )
    got = {f.labels["m"]: f for f in findings(st, rule, t[-1])}
    assert got["ramp"].trigger and not got["flat"].trigger
    e = got["ramp"].explanation
    _check_crossing(e, t[-1])
    assert abs(e["crossing"]["expected"] - (t[-1] + 6 * 3600)) < 4 * 3600
    assert "prediction" in got["ramp"].annotations and got["ramp"].annotations[
        "confidence"
    ].endswith("%")
    # direction below: the flat series will not fall below 0.1, the ramp never goes down
    below = rule.replace("threshold: 0.9", "threshold: 0.1\n        direction: below")
    assert not any(f.trigger for f in findings(st, below, t[-1]))


def test_threshold_approaching_ignores_crossings_the_history_cannot_reach() -> None:
    from perfintel.alerting.rules.kinds.base import reachable

    x = np.array([0.0, 1, 2, 3, 4, 5])
    assert reachable(x, 2.0, 3, True).tolist() == [False, True, True]
    assert reachable(x, 9.0, 3, True).tolist() == [False, False, False]
    assert reachable(x, -1.0, 2, True).tolist() == [True, True]


def test_capacity_exhaustion_on_a_filling_disk() -> None:
    st = MemoryStore()
    t = T0 + 900 * np.arange(4 * 24 * 7)
    rng = np.random.default_rng(2)
    tod = ((t - T0) % DAY) / DAY
    used = (
        40
        + 55 * (t - T0) / (t[-1] - T0 + 0.25 * DAY)
        + 3 * np.sin(2 * np.pi * tod)
        + rng.normal(0, 0.3, t.size)
    )
    put(st, {"__name__": "used", "m": "fill"}, t, used)
    put(st, {"__name__": "used", "m": "flat"}, t, 50 + rng.normal(0, 0.5, t.size))
    for m in ("fill", "flat"):
        put(st, {"__name__": "size", "m": m}, t, np.full(t.size, 100.0))
    rule = (
        "      - alert: A\n        kind: capacity_exhaustion\n        expr: used\n        capacity: size\n"
        "        within: 1d\n        step: 15m\n        history: 7d\n"
    )
    got = {f.labels["m"]: f for f in findings(st, rule, t[-1])}
    assert got["fill"].trigger and not got["flat"].trigger
    e = got["fill"].explanation
    _check_crossing(e, t[-1])
    assert e["threshold"] == 100.0 and e["bound"] == "p10"
    # a number works as the capacity too
    got2 = findings(st, rule.replace("capacity: size", "capacity: 100"), t[-1])
    assert {f.labels["m"]: f.trigger for f in got2} == {"fill": True, "flat": False}


def _ar1(rng: np.random.Generator, n: int, phi: float = 0.8, sd: float = 1.0) -> np.ndarray:
    e = rng.normal(0, sd, n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_trend_test_false_alarm_rate_is_at_most_the_significance() -> None:
    # AR(1) noise around a constant level: no change. The stated bound is P(alarm) <= alpha.
    rng = np.random.default_rng(3)
    alpha, w, k = 0.01, 60, 24
    n_runs, alarms = 2000, 0
    t = np.arange(w, dtype=float) * 60
    for _ in range(n_runs):
        y = 100 + _ar1(rng, w * (k + 1))
        base = [window_summary(t, y[i * w : (i + 1) * w]) for i in range(k)]
        res = trend_test(window_summary(t, y[k * w :]), base, w * 60.0, increase=True)
        assert res is not None
        alarms += res.p < alpha
    # binomial(2000, 0.01): mean 20, sd 4.5; well within even if the test were exact
    assert alarms <= 2000 * alpha + 4 * np.sqrt(2000 * alpha), alarms


def test_trend_degradation_finds_a_level_shift_and_a_creeping_slope() -> None:
    rng = np.random.default_rng(4)
    st = MemoryStore()
    t = T0 + 60 * np.arange(60 * 25)
    quiet = 100 + _ar1(rng, t.size, 0.5)
    shift = quiet.copy()
    shift[-40:] += 25  # +25 % for the last 40 minutes
    creep = quiet + np.where(t > t[-60], (t - t[-60]) / 3600 * 30, 0)  # +30 per hour, last hour
    put(st, {"__name__": "lat", "s": "quiet"}, t, quiet)
    put(st, {"__name__": "lat", "s": "shift"}, t, shift)
    put(st, {"__name__": "lat", "s": "creep"}, t, creep)
    rule = (
        "      - alert: A\n        kind: trend_degradation\n        expr: lat\n        window: 1h\n"
        "        baseline: 1d\n        step: 1m\n        significance: 0.001\n        threshold: 200\n"
    )
    got = {f.labels["s"]: f for f in findings(st, rule, t[-1])}
    assert not got["quiet"].trigger
    assert got["shift"].trigger and got["shift"].explanation["changed"] == "level"
    assert got["creep"].trigger
    e = got["creep"].explanation
    assert e["p_value"] < 0.001 and e["since"] is not None
    assert e["slope_per_hour"]["recent"] > 20
    _check_crossing(e, t[-1])  # with a threshold: when the new trend reaches it


def test_anomaly_burst_against_its_own_normal() -> None:
    rng = np.random.default_rng(5)
    st = MemoryStore()
    t = T0 + 60 * np.arange(60 * 24 * 3)
    for svc, burst in (("calm", False), ("bursting", True)):
        for k in range(5):
            score = rng.exponential(0.2, t.size)
            score[rng.random(t.size) < 0.005] = 1.5  # a normal rate of 0.5 %
            if burst:
                score[-15:][rng.random(15) < 0.6] = 2.0
            put(st, {"__name__": "anomaly_score", "for": f"m{k}", "service": svc}, t, score)
    rule = (
        "      - alert: A\n        kind: anomaly_burst\n        selector: '{service=~\".+\"}'\n"
        "        by: [service]\n        window: 15m\n        baseline: 2d\n"
    )
    got = {f.labels["service"]: f for f in findings(st, rule, t[-1])}
    assert got["bursting"].trigger and not got["calm"].trigger
    e = got["bursting"].explanation
    assert e["rate"] > 5 * e["normal_rate"] and e["p_value"] < 0.001
    assert e["rate_interval"]["p10"] <= e["rate"] <= e["rate_interval"]["p90"]


@pytest.mark.parametrize(
    ("error_ratio", "severities"),
    [(0.02, {"page", "ticket"}), (0.004, {"ticket"}), (0.0005, set())],
)
def test_error_budget_burn_multi_window(error_ratio: float, severities: set[str]) -> None:
    st = MemoryStore()
    t = T0 + 60 * np.arange(60 * 24 * 4)
    total = np.cumsum(np.full(t.size, 1000.0))
    errors = np.cumsum(np.full(t.size, 1000.0 * error_ratio))
    put(st, {"__name__": "req_total", "service": "api", "code": "200"}, t, total - errors)
    put(st, {"__name__": "req_total", "service": "api", "code": "500"}, t, errors)
    rule = (
        "      - alert: A\n        kind: error_budget_burn\n        objective: 99.9\n"
        "        errors: 'req_total{code=~\"5..\"}'\n        total: req_total\n        by: [service]\n"
    )
    got = findings(st, rule, t[-1])
    firing = {f.labels["severity"] for f in got if f.trigger}
    assert firing == severities
    for f in got:
        assert f.labels["service"] == "api"
        assert f.value == pytest.approx(error_ratio / 0.001, rel=0.05)
        if f.trigger:
            e = f.explanation
            assert e["budget_remaining"] is not None
            assert e["budget_remaining"] == 0.0  # burning for days: the month's budget is gone
            assert e["crossing"]["expected"] == t[-1]
            assert "burn" in f.annotations


def test_error_budget_burn_says_when_the_budget_runs_out() -> None:
    st = MemoryStore()
    t = T0 + 60 * np.arange(60 * 24 * 4)
    step_errors = np.where(t > t[-1] - 2 * 3600, 20.0, 0.0)  # 2 % errors for the last 2 hours
    total, errors = np.cumsum(np.full(t.size, 1000.0)), np.cumsum(step_errors)
    put(st, {"__name__": "req_total", "code": "200"}, t, total - errors)
    put(st, {"__name__": "req_total", "code": "500"}, t, errors)
    rule = (
        "      - alert: A\n        kind: error_budget_burn\n        objective: 0.999\n"
        "        good: 'req_total{code=\"200\"}'\n        total: req_total\n"
    )
    got = {f.labels["severity"]: f for f in findings(st, rule, t[-1])}
    assert got["page"].trigger and not got["ticket"].trigger
    e = got["page"].explanation
    # budget used: the error ratio over the period (the 4 days there are) over the allowed 0.1 %
    used = (2 * 60 * 20) / (1000 * t.size) / 0.001
    assert e["budget_remaining"] == pytest.approx(1 - used, rel=0.02)
    c = e["crossing"]
    assert t[-1] < c["earliest"] < c["expected"] < c["latest"]
    # what is left lasts remaining x 30 d / 20
    assert c["expected"] - t[-1] == pytest.approx(e["budget_remaining"] * 30 * DAY / 20, rel=0.05)
