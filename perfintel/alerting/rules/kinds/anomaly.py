"""``kind: anomaly`` — the online anomaly score of a selector at or above a threshold.

The online detector (``perfintel.performance.online``) writes, for every
analysed series, ``anomaly_score`` (0 = as expected, 1 = at the edge of the
expected band, above = outside it) and the band ``yhat``/``yhat_lower``/
``yhat_upper``, under vmanomaly's names: the source's labels plus
``for="<source metric>"``. This kind reads the score of the series matching
``selector``::

    - alert: LatencyAnomaly
      kind: anomaly
      selector: http_request_duration_seconds{job="api"}
      threshold: 1          # score at or above: anomalous (default 1)
      resolve_threshold: 0.6  # optional hysteresis: stays active while score >= 0.6
      for: 5m               # "for a duration", as any alerting rule

Labels of the alert: the score's (the source labels and ``for``).
``$value`` is the score; the explanation holds the value, band and score.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from perfintel.alerting.rules.kinds.base import (
    Finding,
    KindContext,
    KindParams,
    output_selector,
    without_name,
)
from perfintel.errors import PerfintelError
from perfintel.model import parse_selector

SCORE = "anomaly_score"
BAND = ("yhat", "yhat_lower", "yhat_upper")


def check_selector(v: str) -> str:
    try:
        parse_selector(v)
    except PerfintelError as exc:
        raise ValueError(str(exc)) from None
    return v


class AnomalyParams(KindParams):
    selector: str = Field(description="Series selector of the analysed (source) series.")
    threshold: float = Field(1.0, gt=0)
    resolve_threshold: float | None = Field(None, gt=0)

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        return check_selector(v)

    @model_validator(mode="after")
    def _hysteresis(self) -> AnomalyParams:
        if self.resolve_threshold is not None and self.resolve_threshold > self.threshold:
            raise ValueError("resolve_threshold must not be above threshold")
        return self

    def describe(self) -> str:
        return f"{SCORE} of {self.selector} >= {self.threshold:g}"


class AnomalyKind:
    name = "anomaly"
    params = AnomalyParams

    def expressions(self, params: AnomalyParams) -> list[tuple[str, str]]:
        return [("selector", output_selector(params.selector, SCORE))]

    def evaluate(self, params: AnomalyParams, ctx: KindContext) -> list[Finding]:
        low = params.resolve_threshold if params.resolve_threshold is not None else params.threshold
        scores = ctx.instant(output_selector(params.selector, SCORE))
        hits = [s for s in scores if float(s.values[0]) >= low]
        if not hits:
            return []
        bands = {
            name: {
                frozenset(without_name(s.labels).items()): float(s.values[0])
                for s in ctx.instant(output_selector(params.selector, name))
            }
            for name in BAND
        }
        sources = {
            frozenset({**without_name(s.labels), "for": name}.items()): float(s.values[0])
            for s in ctx.instant(params.selector)
            for name in [dict(s.labels).get("__name__", "")]
        }
        out = []
        for s in hits:
            labels = without_name(s.labels)
            score = float(s.values[0])
            key = frozenset(labels.items())
            band = {name: bands[name].get(key) for name in BAND}
            out.append(
                Finding(
                    labels,
                    score,
                    trigger=score >= params.threshold,
                    held=score < params.threshold,
                    explanation={
                        "kind": self.name,
                        "now": ctx.now_s,
                        "value": sources.get(key),
                        "anomaly_score": score,
                        "threshold": params.threshold,
                        "expected": band["yhat"],
                        "band": {"lower": band["yhat_lower"], "upper": band["yhat_upper"]},
                        "series": labels.get("for", ""),
                    },
                )
            )
        return out


KIND = AnomalyKind()
