"""``kind: capacity_exhaustion`` — time to exhaustion below ``within``, judged on its pessimistic bound.

::

    - alert: DiskWillFill
      kind: capacity_exhaustion
      expr: node_filesystem_size_bytes - node_filesystem_avail_bytes   # usage
      capacity: node_filesystem_size_bytes      # a number, or PromQL matched on labels
      within: 24h            # alert when exhaustion is this close ...
      bound: p10             # ... by the pessimistic (10th percentile) exhaustion time
      history: 7d            # usage history the projection learns from
      step: 15m
      min_history: 1d

The projection is perfintel's capacity model (``perfintel.analysis.capacity``):
sawtooth usage (fills cut back by log rotation or retention jobs) is modelled
as a ramp restarting at every clean-up, anything else as seasonal profiles
plus a robust trend, with uncertainty from simulated sample paths. That is
what keeps a periodic clean-up, a daily cycle or a one-time jump from passing
for growth — the false alarms of ``predict_linear``.

The exhaustion times P10 / P50 / P90 are the alert's ``earliest`` /
``expected`` / ``latest`` crossing; the rule triggers when the ``bound``
(default P10: "at least a 10 % chance of being full within ``within``") is
within ``within`` and reachable: filling what is left by then must not take a
faster rise than the usage has ever made over a span that long (a model fit
on too few cycles of a slow sawtooth cannot raise an alert on its own). ``confidence`` is the probability of exhaustion within
``within``, read off those quantiles (and the share of paths exhausting
within the projection's horizon) on a normal scale. A capacity series is
paired with the usage series of the same labels (``__name__`` aside), or,
when the capacity selects exactly one series, it serves every usage series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import Field

from perfintel.alerting.rules.kinds.base import (
    Finding,
    KindContext,
    KindParams,
    PromDuration,
    crossing_annotations,
    crossing_explanation,
    normal_cdf,
    normal_ppf,
    reachable,
    without_name,
)
from perfintel.analysis.capacity import Scenario, plan_capacity
from perfintel.errors import BadInputError

DAY = 86400.0


class CapacityParams(KindParams):
    expr: str
    capacity: float | str
    within: PromDuration = DAY
    bound: Literal["p10", "p50", "p90"] = "p10"
    history: PromDuration = 7 * DAY
    step: PromDuration = 900.0
    min_history: PromDuration = DAY
    max_series: int = Field(200, gt=0)

    def describe(self) -> str:
        return (
            f"time to exhaustion of ({self.expr}) against {self.capacity} "
            f"<= {self.within:g}s at {self.bound}"
        )


def probability_within(
    t: float, quantiles: Mapping[float, float | None], horizon: float, p_horizon: float
) -> float:
    """P(exhaustion before ``t``) from exhaustion-time quantiles (seconds from now, ``None`` =
    beyond the horizon) and the probability of exhaustion within ``horizon``."""
    knots = sorted((v, q) for q, v in quantiles.items() if v is not None)
    if 0 < p_horizon < 1 and all(q < p_horizon for _, q in knots):
        knots.append((horizon, p_horizon))
    if not knots:
        return 0.0 if t <= horizon else p_horizon
    ts = np.array([k[0] for k in knots])
    zs = np.array([normal_ppf(min(max(k[1], 1e-6), 1 - 1e-6)) for k in knots])
    if t <= ts[0]:
        if len(ts) > 1 and ts[1] > ts[0]:
            z = zs[0] + (t - ts[0]) * (zs[1] - zs[0]) / (ts[1] - ts[0])
        else:
            z = zs[0] - 1.0 if t < ts[0] else zs[0]
        return float(normal_cdf(max(z, -6.0)))
    if t >= ts[-1]:
        return float(normal_cdf(zs[-1]))  # no knowledge beyond: the last quantile is a floor
    return float(normal_cdf(np.interp(t, ts, zs)))


class CapacityKind:
    name = "capacity_exhaustion"
    params = CapacityParams

    def expressions(self, params: CapacityParams) -> list[tuple[str, str]]:
        out = [("expr", params.expr)]
        if isinstance(params.capacity, str):
            out.append(("capacity", params.capacity))
        return out

    def evaluate(self, params: CapacityParams, ctx: KindContext) -> list[Finding]:
        usage = ctx.range(params.expr, params.history, params.step, max_series=params.max_series)
        if not usage:
            return []
        caps: dict[frozenset[tuple[str, str]], float] = {}
        single: float | None = None
        if isinstance(params.capacity, str):
            found = ctx.instant(params.capacity)
            for s in found:
                caps[frozenset(without_name(s.labels).items())] = float(s.values[-1])
            if len(found) == 1:
                single = float(found[0].values[-1])
        else:
            single = float(params.capacity)
        horizon_days = float(min(365.0, max(1.0, 2 * params.within / DAY)))
        need = params.min_history / params.step
        out = []
        for s in usage:
            labels = without_name(s.labels)
            cap = caps.get(frozenset(labels.items()), single)
            ok = np.isfinite(s.values)
            if cap is None or not cap > 0 or ok.sum() < need:
                continue
            try:
                report = plan_capacity(
                    s.timestamps[ok] / 1000.0,
                    s.values[ok],
                    cap,
                    horizon_days=horizon_days,
                    scenarios=(Scenario(),),
                    step_seconds=params.step,
                )
            except BadInputError:
                continue
            base = report.baseline
            now = ctx.now_s
            days = {0.1: base.days_p10, 0.5: base.days_p50, 0.9: base.days_p90}
            secs = {q: None if d is None else d * DAY for q, d in days.items()}
            chosen = {"p10": secs[0.1], "p50": secs[0.5], "p90": secs[0.9]}[params.bound]
            value = float(s.values[ok][-1])
            trigger = chosen is not None and chosen <= params.within
            if trigger and chosen is not None and chosen > 0:
                # the projection may not need a faster rise than the usage has ever made
                k = max(1, int(np.ceil(chosen / params.step)))
                trigger = bool(reachable(s.values[ok], cap - value, k, True)[-1])

            def at(x: float | None, now: float = now) -> float | None:
                return None if x is None else now + x

            conf = probability_within(
                params.within, secs, horizon_days * DAY, float(base.probability)
            )
            expl = crossing_explanation(
                kind=self.name,
                now=now,
                value=value,
                threshold=cap,
                expected=at(secs[0.5]),
                earliest=at(secs[0.1]),
                latest=at(secs[0.9]),
                interval="P10-P90",
                confidence=conf,
                band={},
                utilisation=report.utilisation_now,
                model=report.model,
                bound=params.bound,
                within=params.within,
                summary=base.sentence,
                backtest=None
                if report.backtest is None
                else {"smape": report.backtest.smape, "coverage": report.backtest.coverage},
            )
            out.append(
                Finding(
                    labels,
                    value,
                    trigger=trigger,
                    explanation=expl,
                    annotations=crossing_annotations("exhaustion", expl),
                )
            )
        return out


KIND = CapacityKind()
