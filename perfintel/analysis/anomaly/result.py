"""Per-point results for users, vmanomaly style, with a plain-words explanation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from perfintel.analysis.anomaly.base import StepOut
from perfintel.analysis.anomaly.flat import ConstantRun, below_resolution, describe

#: Names of the ensemble's components, in the order of ``StepOut.extra["which"]``.
COMPONENT_LABELS = (
    ("seasonal", "the seasonal baseline (value far outside its expected band)"),
    (
        "shift",
        "the level-shift detector (the recent level or spread departs from the long-run one)",
    ),
    ("novelty", "the context-novelty detector (a sequence of values not seen before)"),
)
_CONTEXT = ("given the recent level", "for {hour}", "for a {weekday} {hour}")


@dataclass(frozen=True)
class AnomalyResult:
    """One scored sample.

    ``score`` is the NAB-style score in [0, 1] (0 while alarms are suppressed
    after an alarm); ``anomaly_score`` is 0 when the value equals ``yhat``, 1 at
    the edge of [``yhat_lower``, ``yhat_upper``] and above 1 outside it.
    ``is_anomaly`` marks an alarm (the NAB score reached the alarm level, or
    the value is far outside the band — ``EnsembleConfig.band_alert`` half-bands
    — even while repeated alarms are suppressed); ``explanation`` is empty otherwise.
    """

    ts_ms: int
    value: float
    score: float
    anomaly_score: float
    yhat: float
    yhat_lower: float
    yhat_upper: float
    is_anomaly: bool
    detector: str
    severity: str
    explanation: str


#: the severities of a scored sample, least first
SEVERITIES = ("none", "low", "medium", "high", "critical")


def severity_of(score: float, anomaly_score: float) -> str:
    """``none``, ``low``, ``medium``, ``high`` or ``critical``."""
    if math.isnan(anomaly_score):
        anomaly_score = 0.0
    level = max(
        0 if score < 0.5 else 1 if score < 0.7 else 2 if score < 0.9 else 3,
        0 if anomaly_score <= 1 else 1 if anomaly_score < 1.5 else 2 if anomaly_score < 2.5 else 3,
    )
    if anomaly_score >= 5 and level >= 1:
        level = 4
    return SEVERITIES[level]


def _when(ts_ms: int, model: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)
    return _CONTEXT[model].format(hour=dt.strftime("%H:%M"), weekday=dt.strftime("%A"))


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"


def explain(
    ts_ms: int,
    value: float,
    out: StepOut | None,
    alarm: float,
    i: int = 0,
    *,
    constant: ConstantRun | None = None,
) -> AnomalyResult:
    """Build the result of sample ``i`` of a ``StepOut`` (``None`` = a NaN sample).

    ``constant``: the run of equal samples before the change, when the caller has the
    history; a change of a series whose learnt spread is below its resolution (it had
    been constant) is told from that run (``flat.py``) and graded by ``anomaly_score``
    alone.
    """
    nan = float("nan")
    if out is None:
        return AnomalyResult(ts_ms, value, 0.0, nan, nan, nan, nan, False, "", "none", "")
    score = float(out.score[i])
    yhat = float(out.yhat[i]) if out.yhat is not None else nan
    lo = float(out.lower[i]) if out.lower is not None else nan
    hi = float(out.upper[i]) if out.upper is not None else nan
    a_score = float(out.anomaly_score[i]) if out.anomaly_score is not None else nan
    which = int(out.extra["which"][i]) if "which" in out.extra else 0
    if "alert" in out.extra:
        fired = bool(out.extra["alert"][i])
    elif "fired" in out.extra:
        fired = bool(out.extra["fired"][i])
    else:
        fired = score >= alarm
    detector, why = COMPONENT_LABELS[which] if "which" in out.extra else ("", "")
    sigma = float(out.extra["sigma"][i]) if "sigma" in out.extra else nan
    grid = float(out.extra["grid"][i]) if "grid" in out.extra else nan
    flat = not math.isnan(yhat) and below_resolution(sigma, grid)
    sev = "none"
    if fired:
        # a flat series' NAB score is saturated by any move: graded by the band distance
        sev = severity_of(0.0, a_score) if flat else severity_of(score, a_score)
        sev = "low" if flat and sev == "none" else sev
    text = ""
    if fired:
        model = int(out.extra.get("model", np.zeros(i + 1))[i])
        parts = [f"value {_fmt(value)}"]
        if flat:
            parts = [describe(value, yhat, constant, grid)]
        elif not math.isnan(yhat) and sigma > 0:
            k = abs(value - yhat) / sigma
            side = "above" if value >= yhat else "below"
            parts.append(
                f"is {k:.1f}× the usual spread {side} the expected {_fmt(yhat)} "
                f"{_when(ts_ms, model)} (expected band {_fmt(lo)} to {_fmt(hi)})"
            )
        text = " ".join(parts) + f"; flagged by {why}; severity {sev}."
    return AnomalyResult(ts_ms, value, score, a_score, yhat, lo, hi, fired, detector, sev, text)
