"""``kind: error_budget_burn`` — multi-window, multi-burn-rate SLO alerts (Google SRE workbook).

::

    - alert: ErrorBudgetBurn
      kind: error_budget_burn
      objective: 99.9                          # percent (or 0.999)
      errors: http_requests_total{code=~"5.."} # or good: ...; counters, as selectors
      total: http_requests_total
      by: [service]
      period: 30d                              # the SLO period the budget is spread over
      # windows: the workbook's table, the default:
      #   - {long: 1h, short: 5m,  factor: 14.4, severity: page}    # 2 % of the budget in 1 h
      #   - {long: 6h, short: 30m, factor: 6,    severity: page}    # 5 % in 6 h
      #   - {long: 3d, short: 6h,  factor: 1,    severity: ticket}  # 10 % in 3 days

The error ratio over a window is ``increase(errors[w]) / increase(total[w])``
summed by ``by`` (or ``1 - good / total``); the burn rate is that ratio over
the error budget ``1 - objective``. A window pair fires when the burn rate
is at least ``factor`` over both its long and its short window (the short
one makes the alert stop soon after the burning does). One alert per
``by`` group and severity (label ``severity``), active while any pair of
that severity fires; ``$value`` is the highest long-window burn rate.

The explanation gives every pair's burn rates, the budget left over
``period`` and when it runs out at the current burn (``expected``), with a
P10-P90 interval from the error count's uncertainty (a Jeffreys beta
posterior of the long window's error ratio), and ``confidence``: the
posterior probability that the true burn rate reaches the pair's factor.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import stats

from perfintel.alerting.rules.kinds.anomaly import check_selector
from perfintel.alerting.rules.kinds.base import (
    Finding,
    KindContext,
    KindParams,
    PromDuration,
    crossing_explanation,
    group_key,
    short_duration,
    without_name,
)


class BurnWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    long: PromDuration
    short: PromDuration
    factor: float = Field(gt=0)
    severity: str = Field(min_length=1)


#: the SRE workbook's recommended multi-window, multi-burn-rate table
SRE_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow.model_validate({"long": "1h", "short": "5m", "factor": 14.4, "severity": "page"}),
    BurnWindow.model_validate({"long": "6h", "short": "30m", "factor": 6, "severity": "page"}),
    BurnWindow.model_validate({"long": "3d", "short": "6h", "factor": 1, "severity": "ticket"}),
)


class SloParams(KindParams):
    objective: float = Field(gt=0, lt=100)
    errors: str | None = None
    good: str | None = None
    total: str
    by: list[str] = Field(default_factory=list)
    period: PromDuration = 30 * 86400.0
    windows: tuple[BurnWindow, ...] = SRE_WINDOWS

    @field_validator("errors", "good", "total")
    @classmethod
    def _selectors(cls, v: str | None) -> str | None:
        return None if v is None else check_selector(v)

    @model_validator(mode="after")
    def _one_of(self) -> SloParams:
        if (self.errors is None) == (self.good is None):
            raise ValueError("set exactly one of 'errors' and 'good'")
        if self.ratio >= 1:
            raise ValueError("objective must be below 100 %")
        if not self.windows:
            raise ValueError("at least one window pair is needed")
        return self

    @property
    def ratio(self) -> float:
        """The objective as a fraction (99.9 and 0.999 both mean 0.999)."""
        return self.objective / 100 if self.objective > 1 else self.objective

    @property
    def budget(self) -> float:
        return 1.0 - self.ratio

    def describe(self) -> str:
        what = f"errors={self.errors}" if self.errors else f"good={self.good}"
        return f"burn rate of {what} / total={self.total} against {100 * self.ratio:g}% (SRE multi-window)"


def _dur(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


class SloKind:
    name = "error_budget_burn"
    params = SloParams

    def expressions(self, params: SloParams) -> list[tuple[str, str]]:
        out = [("total", params.total)]
        out.append(("errors", params.errors) if params.errors else ("good", params.good or ""))
        return out

    def _counts(
        self, params: SloParams, ctx: KindContext, window: float
    ) -> dict[tuple[tuple[str, str], ...], tuple[float, float]]:
        """``(bad events, all events)`` over ``window`` per group."""
        by = f" by ({', '.join(params.by)})" if params.by else ""
        w = _dur(window)

        def q(sel: str) -> dict[tuple[tuple[str, str], ...], float]:
            return {
                group_key(without_name(s.labels), params.by): float(s.values[0])
                for s in ctx.instant(f"sum{by} (increase({sel}[{w}]))")
            }

        total = q(params.total)
        part = q(params.errors or params.good or "")
        out = {}
        for key, t in total.items():
            p = part.get(key, 0.0)
            bad = p if params.errors else t - p
            out[key] = (max(0.0, bad), t)
        return out

    def evaluate(self, params: SloParams, ctx: KindContext) -> list[Finding]:
        spans = sorted({w.long for w in params.windows} | {w.short for w in params.windows})
        counts = {w: self._counts(params, ctx, w) for w in spans}
        budget = params.budget
        keys = set().union(*(c.keys() for c in counts.values()))
        severities = list(dict.fromkeys(w.severity for w in params.windows))
        period_counts: dict[tuple[tuple[str, str], ...], tuple[float, float]] | None = None
        out = []
        for key in sorted(keys):
            rows: list[dict[str, Any]] = []
            for w in params.windows:
                bl, tl = counts[w.long].get(key, (0.0, 0.0))
                bs, ts = counts[w.short].get(key, (0.0, 0.0))
                burn_l = (bl / tl) / budget if tl > 0 else 0.0
                burn_s = (bs / ts) / budget if ts > 0 else 0.0
                rows.append(
                    {
                        "long": w.long,
                        "short": w.short,
                        "factor": w.factor,
                        "severity": w.severity,
                        "burn_long": burn_l,
                        "burn_short": burn_s,
                        "errors_long": bl,
                        "events_long": tl,
                        "firing": burn_l >= w.factor and burn_s >= w.factor,
                    }
                )
            for sev in severities:
                mine = [r for r in rows if r["severity"] == sev]
                firing = [r for r in mine if r["firing"]]
                lead = max(firing or mine, key=lambda r: r["burn_long"])
                if firing and period_counts is None:
                    period_counts = self._counts(params, ctx, params.period)
                expl = self._explain(params, ctx, lead, mine, period_counts, key)
                out.append(
                    Finding(
                        {**dict(key), "severity": sev},
                        float(lead["burn_long"]),
                        trigger=bool(firing),
                        explanation=expl,
                        annotations=self._annotations(params, lead, expl),
                    )
                )
        return out

    def _explain(
        self,
        params: SloParams,
        ctx: KindContext,
        lead: dict[str, Any],
        rows: list[dict[str, Any]],
        period_counts: dict[tuple[tuple[str, str], ...], tuple[float, float]] | None,
        key: tuple[tuple[str, str], ...],
    ) -> dict[str, object]:
        budget, now = params.budget, ctx.now_s
        k, n = float(lead["errors_long"]), float(lead["events_long"])
        a, b = k + 0.5, max(n - k, 0.0) + 0.5
        ratio_q = {q: float(stats.beta.ppf(q, a, b)) for q in (0.1, 0.5, 0.9)} if n > 0 else {}
        confidence = float(stats.beta.sf(lead["factor"] * budget, a, b)) if n > 0 else 0.0
        remaining = None
        if period_counts is not None and key in period_counts:
            pb, pt = period_counts[key]
            used = (pb / pt) / budget if pt > 0 else 0.0
            remaining = max(0.0, 1.0 - used)

        def exhaust(ratio: float | None) -> float | None:
            if remaining is None or ratio is None or ratio <= 0:
                return None
            burn = ratio / budget
            return now + remaining * params.period / burn

        observed = k / n if n > 0 else 0.0
        return crossing_explanation(
            kind=self.name,
            now=now,
            value=float(lead["burn_long"]),
            threshold=float(lead["factor"]),
            expected=exhaust(observed),
            earliest=exhaust(ratio_q.get(0.9)),
            latest=exhaust(ratio_q.get(0.1)),
            interval="P10-P90",
            confidence=confidence,
            band={
                "burn_rate_p10": ratio_q.get(0.1, 0.0) / budget,
                "burn_rate_p90": ratio_q.get(0.9, 0.0) / budget,
            },
            objective=params.ratio,
            error_ratio=observed,
            budget_remaining=remaining,
            windows=[{**r, "long": _dur(r["long"]), "short": _dur(r["short"])} for r in rows],
        )

    def _annotations(
        self, params: SloParams, lead: dict[str, Any], expl: dict[str, Any]
    ) -> dict[str, str]:
        c = expl["crossing"]
        now = float(expl["now"])
        text = (
            f"burning the error budget at {lead['burn_long']:.1f}x over {_dur(lead['long'])} "
            f"and {lead['burn_short']:.1f}x over {_dur(lead['short'])} "
            f"(alert at {lead['factor']:g}x, objective {100 * params.ratio:g}%)"
        )
        if c["expected"] is not None and expl.get("budget_remaining") is not None:
            left = float(expl["budget_remaining"])
            span = lambda t: "?" if t is None else short_duration(max(0.0, t - now))  # noqa: E731
            text += (
                f"; {100 * left:.0f}% of the budget left, gone in {span(c['expected'])} "
                f"(P10 {span(c['earliest'])}, P90 {span(c['latest'])})"
            )
        return {"burn": text, "confidence": f"{100 * float(expl['confidence']):.0f}%"}


KIND = SloKind()
