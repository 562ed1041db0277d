"""The health formula of docs/health.md, checked on constructed signals."""

from __future__ import annotations

import pytest

from perfintel.overview import health as h
from perfintel.overview.health import SelfSignals, Signals, overall, score_entity, score_self


def test_nothing_measured_is_a_perfect_score() -> None:
    got = score_entity("service", "api", Signals())
    assert (got.score, got.status, got.reasons) == (100.0, "ok", [])


def test_each_signal_costs_what_the_documented_formula_says() -> None:
    s = Signals(
        anomaly_share=0.05,  # half of the 10 % that costs the full 30 -> 15
        cpu=0.82,  # (0.82 - 0.70) / 0.25 * 20 = 9.6
        memory=0.5,  # below 70 % -> 0
        error_share=0.01,  # 1 % of 5 % * 30 = 6
        down_share=0.25,  # 25 % of 50 = 12.5
        exhaustion_days_p50=15.0,  # 25 * (1 - 15/30) = 12.5
        exhaustion_days_p10=14.0,  # beyond 7 days -> 0
    )
    got = score_entity("service", "checkout", s)
    penalties = {r.signal: r.penalty for r in got.reasons}
    assert penalties == pytest.approx(
        {
            "anomalies": 15.0,
            "cpu": 9.6,
            "memory": 0.0,
            "errors": 6.0,
            "availability": 12.5,
            "capacity": 12.5,
            "forecast": 0.0,
        }
    )
    assert got.score == pytest.approx(100 - 15 - 9.6 - 6 - 12.5 - 12.5)
    assert got.status == "critical"  # 44.4 < 50
    assert [r.penalty for r in got.reasons] == sorted(penalties.values(), reverse=True)


def test_penalties_saturate_and_the_score_never_goes_below_zero() -> None:
    s = Signals(
        anomaly_share=0.9,
        cpu=1.0,
        memory=1.0,
        disk=1.0,
        network=1.0,
        error_share=1.0,
        down_share=1.0,
        exhaustion_days_p50=0.0,
        exhaustion_days_p10=0.0,
    )
    got = score_entity("host", "db-1", s)
    by = {r.signal: r.penalty for r in got.reasons}
    assert by["anomalies"] == h.ANOMALY_PENALTY
    # four saturated resources would cost 80: scaled down together to the cap
    assert sum(by[k] for k in h.SATURATION_SIGNALS) == pytest.approx(h.SATURATION_CAP)
    assert by["cpu"] == pytest.approx(h.SATURATION_CAP / 4)
    assert got.score == 0.0 and got.status == "critical"


@pytest.mark.parametrize(("days", "penalty"), [(0.0, 25.0), (7.5, 18.75), (30.0, 0.0), (90.0, 0.0)])
def test_capacity_penalty_is_linear_within_thirty_days(days: float, penalty: float) -> None:
    got = score_entity("host", "h", Signals(exhaustion_days_p50=days))
    assert got.reasons[0].penalty == pytest.approx(penalty)


def test_overall_is_half_the_mean_and_half_the_worst() -> None:
    ents = [
        score_entity("service", "a", Signals()),  # 100
        score_entity("service", "b", Signals()),  # 100
        score_entity("service", "c", Signals(down_share=1.0)),  # 50
    ]
    got = overall(ents)
    mean = (100 + 100 + 50) / 3
    assert got.score == pytest.approx(round(0.5 * mean + 0.5 * 50, 1))
    assert "service c" in got.reasons[1].detail
    assert overall([]).score == 100.0


def test_self_health_reasons() -> None:
    fine = score_self(SelfSignals(seconds_since_ingest=5, expected_interval_s=15))
    assert fine.score == 100.0
    bad = score_self(
        SelfSignals(
            seconds_since_ingest=100,
            expected_interval_s=15,  # silent for more than 3 intervals: 25
            head_fill=0.75,  # half-way from 50 % to 100 %: 15
            anomaly_dropped_recent=3,  # 15
            refresh_age_s=100,
            refresh_interval_s=15,  # stale overview: 20
            recent_errors=2,  # 10
        )
    )
    by = {r.signal: r.penalty for r in bad.reasons}
    assert by == pytest.approx(
        {
            "ingest": 25,
            "head": 15,
            "detector_queue": 0,
            "detector_dropped": 15,
            "evaluation": 20,
            "errors": 10,
        }
    )
    assert bad.score == 15.0 and bad.status == "critical"


def test_active_alerts_cost_by_severity_up_to_the_cap() -> None:
    one = score_entity("service", "shop", Signals(alerts={"critical": 1, "warning": 1}))
    assert one.score == 100 - 25 - 10
    assert one.reasons[0].signal == "alerts" and one.reasons[0].value == 2
    assert "1 critical, 1 warning" in one.reasons[0].detail
    many = score_entity("service", "shop", Signals(alerts={"critical": 3, "info": 4}))
    assert many.score == 100 - h.ALERT_CAP  # 75 + 12 capped at 50
    quiet = score_entity("service", "shop", Signals(alerts={}))
    assert (quiet.score, [(r.signal, r.penalty) for r in quiet.reasons]) == (100, [("alerts", 0)])
