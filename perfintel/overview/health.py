"""Health scores: 0–100 per service, host and overall, with the reasons behind each.

Pure: signals in, scores out (``docs/health.md`` explains the same formula to
users). A score starts at 100 and loses a *penalty* per signal; signals that
were not measured (``None``) cost nothing and are not listed.

=================  ==============================================  =========================
signal             measured as                                     penalty
=================  ==============================================  =========================
anomalies          share of analysed points with anomaly_score>1   30 × min(1, share / 10 %)
cpu, memory,       utilisation 0–1 (network: link use or the       20 × clamp((u − 70 %) /
disk, network      share of packets dropped or in error)           25 %) each; all four
                                                                   together at most 40
errors             share of requests answered 5xx                  30 × min(1, share / 5 %)
availability       share of scrape targets down (up == 0)          50 × share
capacity           soonest median (P50) time to exhaustion, days   25 × clamp(1 − d / 30)
forecast           soonest pessimistic (P10) exhaustion, days      10 × clamp(1 − d / 7)
alerts             active alerts (firing, not silenced or          25 per critical, 10 per
                   inhibited) labelled with the service, or with   warning, 3 per other;
                   the host as ``instance``                        at most 50
=================  ==============================================  =========================

``score = max(0, 100 − Σ penalties)``, rounded to one decimal. Status:
``ok`` from 80, ``warning`` from 50, ``critical`` below. The overall score is
``0.5 × mean + 0.5 × min`` of the entity scores, so one failing service is not
hidden by many healthy ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: (signal, full penalty) of the rules above; the tests check the formula through these.
ANOMALY_FULL_SHARE = 0.10
ANOMALY_PENALTY = 30.0
SATURATION_START = 0.70
SATURATION_SPAN = 0.25
SATURATION_PENALTY = 20.0
SATURATION_CAP = 40.0
ERROR_FULL_SHARE = 0.05
ERROR_PENALTY = 30.0
DOWN_PENALTY = 50.0
CAPACITY_DAYS = 30.0
CAPACITY_PENALTY = 25.0
FORECAST_DAYS = 7.0
FORECAST_PENALTY = 10.0
ALERT_PENALTY = {"critical": 25.0, "warning": 10.0, "info": 3.0}
ALERT_CAP = 50.0
OK_FROM = 80.0
WARNING_FROM = 50.0

SATURATION_SIGNALS = ("cpu", "memory", "disk", "network")


@dataclass
class Signals:
    """What is known about one service or host; ``None``: not measured."""

    anomaly_share: float | None = None
    cpu: float | None = None
    memory: float | None = None
    disk: float | None = None
    network: float | None = None
    error_share: float | None = None
    down_share: float | None = None
    exhaustion_days_p50: float | None = None
    exhaustion_days_p10: float | None = None
    #: active alerts by severity bucket (critical, warning, info); None: alerting is off
    alerts: dict[str, int] | None = None


@dataclass(frozen=True)
class Reason:
    signal: str
    value: float
    penalty: float
    detail: str


@dataclass
class Health:
    kind: str  # service, host, overall or perfintel
    name: str
    score: float
    status: str
    reasons: list[Reason] = field(default_factory=list)


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def status_of(score: float) -> str:
    return "ok" if score >= OK_FROM else "warning" if score >= WARNING_FROM else "critical"


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def reasons_of(s: Signals) -> list[Reason]:
    """Every measured signal with its penalty (0 when it is fine), largest penalty first."""
    out: list[Reason] = []
    for signal, share, full, at, what in (
        (
            "anomalies",
            s.anomaly_share,
            ANOMALY_PENALTY,
            ANOMALY_FULL_SHARE,
            "analysed points anomalous",
        ),
        ("errors", s.error_share, ERROR_PENALTY, ERROR_FULL_SHARE, "requests failed with 5xx"),
    ):
        if share is not None:
            p = full * _clamp(share / at)
            out.append(
                Reason(signal, share, p, f"{_pct(share)} of {what} (full {full:g} at {_pct(at)})")
            )
    saturation = []
    for name in SATURATION_SIGNALS:
        u = getattr(s, name)
        if u is None:
            continue
        p = SATURATION_PENALTY * _clamp((u - SATURATION_START) / SATURATION_SPAN)
        saturation.append(
            Reason(
                name,
                u,
                p,
                f"{name} {_pct(u)} used (penalty from {_pct(SATURATION_START)}, "
                f"full {SATURATION_PENALTY:g} at {_pct(SATURATION_START + SATURATION_SPAN)})",
            )
        )
    total = sum(r.penalty for r in saturation)
    if total > SATURATION_CAP:  # scale the saturation penalties down to the cap together
        k = SATURATION_CAP / total
        saturation = [Reason(r.signal, r.value, r.penalty * k, r.detail) for r in saturation]
    out.extend(saturation)
    if s.down_share is not None:
        p = DOWN_PENALTY * _clamp(s.down_share)
        out.append(Reason("availability", s.down_share, p, f"{_pct(s.down_share)} of targets down"))
    for signal, days, full, within, what in (
        ("capacity", s.exhaustion_days_p50, CAPACITY_PENALTY, CAPACITY_DAYS, "median, P50"),
        ("forecast", s.exhaustion_days_p10, FORECAST_PENALTY, FORECAST_DAYS, "pessimistic, P10"),
    ):
        if days is not None:
            p = full * _clamp(1 - days / within)
            out.append(
                Reason(
                    signal,
                    days,
                    p,
                    f"a resource runs out in {days:.3g} days ({what}; penalty within "
                    f"{within:g} days)",
                )
            )
    if s.alerts is not None:
        n = sum(s.alerts.values())
        p = min(ALERT_CAP, sum(ALERT_PENALTY.get(b, 3.0) * k for b, k in s.alerts.items()))
        what = ", ".join(f"{k} {b}" for b, k in sorted(s.alerts.items()) if k) or "none"
        out.append(
            Reason(
                "alerts",
                float(n),
                p,
                f"{n} active alerts ({what}; 25 per critical, 10 per warning, 3 per other, "
                f"at most {ALERT_CAP:g})",
            )
        )
    out.sort(key=lambda r: -r.penalty)
    return out


def score_entity(kind: str, name: str, signals: Signals) -> Health:
    reasons = reasons_of(signals)
    score = round(max(0.0, 100.0 - sum(r.penalty for r in reasons)), 1)
    rounded = [Reason(r.signal, r.value, round(r.penalty, 2), r.detail) for r in reasons]
    return Health(kind, name, score, status_of(score), rounded)


def overall(entities: Sequence[Health]) -> Health:
    """``0.5 × mean + 0.5 × min`` of the entity scores (100 with no entities)."""
    if not entities:
        return Health("overall", "overall", 100.0, "ok", [])
    scores = [e.score for e in entities]
    mean, low = sum(scores) / len(scores), min(scores)
    score = round(0.5 * mean + 0.5 * low, 1)
    worst = min(entities, key=lambda e: e.score)
    reasons = [
        Reason("mean", round(mean, 1), round(0.5 * (100 - mean), 2), "mean of the entity scores"),
        Reason(
            "worst",
            worst.score,
            round(0.5 * (100 - low), 2),
            f"worst: {worst.kind} {worst.name} ({worst.score:g})",
        ),
    ]
    return Health("overall", "overall", score, status_of(score), reasons)


@dataclass
class SelfSignals:
    """perfintel's own state, as the overview samples it."""

    seconds_since_ingest: float | None = None
    expected_interval_s: float | None = None
    head_fill: float = 0.0  # head samples / the refusal limit
    anomaly_dropped_recent: float = 0.0  # detector batches dropped in the last window
    anomaly_queue_fill: float = 0.0
    refresh_age_s: float = 0.0
    refresh_interval_s: float = 1.0
    recent_errors: int = 0


def score_self(s: SelfSignals) -> Health:
    """perfintel's own health: the same 100-minus-penalties rule over its own signals.

    ingest silence beyond 3 expected intervals 25; head fill beyond half the refusal limit up
    to 30; detector queue fill beyond half up to 15, any dropped detector batch 15; the overview
    older than 3 refresh intervals 20; 5 per error logged in the last 15 minutes, at most 20.
    """
    r: list[Reason] = []
    if s.seconds_since_ingest is not None and s.expected_interval_s:
        late = s.seconds_since_ingest > 3 * s.expected_interval_s
        r.append(
            Reason(
                "ingest",
                s.seconds_since_ingest,
                25.0 if late else 0.0,
                f"last samples accepted {s.seconds_since_ingest:.3g} s ago",
            )
        )
    r.append(
        Reason(
            "head",
            s.head_fill,
            30 * _clamp((s.head_fill - 0.5) / 0.5),
            f"write head {_pct(s.head_fill)} of the limit where writes are refused",
        )
    )
    r.append(
        Reason(
            "detector_queue",
            s.anomaly_queue_fill,
            15 * _clamp((s.anomaly_queue_fill - 0.5) / 0.5),
            f"online detector queue {_pct(s.anomaly_queue_fill)} full",
        )
    )
    if s.anomaly_dropped_recent:
        r.append(
            Reason(
                "detector_dropped",
                s.anomaly_dropped_recent,
                15.0,
                f"{s.anomaly_dropped_recent:g} ingested batches not analysed (detector busy)",
            )
        )
    stale = s.refresh_age_s > 3 * s.refresh_interval_s
    r.append(
        Reason(
            "evaluation",
            s.refresh_age_s,
            20.0 if stale else 0.0,
            f"overview computed {s.refresh_age_s:.3g} s ago",
        )
    )
    if s.recent_errors:
        r.append(
            Reason(
                "errors",
                float(s.recent_errors),
                min(20.0, 5.0 * s.recent_errors),
                f"{s.recent_errors} errors logged in the last 15 minutes",
            )
        )
    r.sort(key=lambda x: -x.penalty)
    score = round(max(0.0, 100.0 - sum(x.penalty for x in r)), 1)
    return Health(
        "perfintel",
        "perfintel",
        score,
        status_of(score),
        [Reason(x.signal, x.value, round(x.penalty, 2), x.detail) for x in r],
    )
