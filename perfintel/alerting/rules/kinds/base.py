"""The contract of a rule kind, and what the kinds share.

A kind turns its parameters and the store into :class:`Finding`\\ s at one
evaluation time: one per series (or group of series) it judged, with
``trigger`` when the kind's condition holds and ``held`` when only its
hysteresis condition does (it keeps an active alert active but never starts
one). The rule engine does the rest exactly as for a Prometheus alerting
rule: labels and annotations (templates see ``$value`` and
``$explanation``), ``for``, ``keep_firing_for``, flap control, sending.

A kind is a :class:`RuleKind`: ``name``, a pydantic ``params`` model (the
extra keys a rule of this kind may have; unknown keys are refused),
``expressions(params)`` (the PromQL texts to validate when the file loads)
and ``evaluate(params, ctx)``. Kinds register through the entry-point group
``perfintel.rule_kinds``, the built-ins included.

Predictive findings carry the same explanation keys, so templates and the UI
read them alike: ``value`` (now), ``threshold``, ``crossing`` (``expected``,
``earliest``, ``latest`` as Unix seconds or ``None``, ``interval`` naming the
quantiles, e.g. ``"P10-P90"``), ``confidence`` (0-1) and ``band``
(``level``, ``lower``, ``upper`` at the expected crossing, or now).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict

from perfintel.alerting.rules.template_funcs import humanize, humanize_duration
from perfintel.errors import QueryLimitError
from perfintel.model import METRIC_NAME, LabelSet, Matcher, MatchOp, parse_selector
from perfintel.query.promql.engine import Engine, Series
from perfintel.storage.base import SampleReader
from perfintel.timeparse import parse_prometheus_duration_seconds

#: a Prometheus duration (``5m``, ``1h30m``) as seconds
PromDuration = Annotated[float, BeforeValidator(parse_prometheus_duration_seconds)]


class KindParams(BaseModel):
    """Base of every kind's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def describe(self) -> str:
        """One line for ``/api/v1/rules``'s ``query``."""
        return ""


@dataclass
class Finding:
    labels: Mapping[str, str]
    value: float
    trigger: bool = True
    held: bool = False
    explanation: dict[str, object] = field(default_factory=dict)
    #: annotations the kind suggests (the rule's own annotations win)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class KindContext:
    """What a kind may read at one evaluation: the store (through PromQL or directly)."""

    reader: SampleReader
    engine: Engine
    time_ms: int

    @property
    def now_s(self) -> float:
        return self.time_ms / 1000.0

    def instant(self, expr: str) -> list[Series]:
        res = self.engine.instant(expr, self.time_ms)
        if res.result_type == "scalar" and res.scalar is not None:
            return [Series((), np.array([self.time_ms]), np.array([res.scalar[1]]))]
        return res.series

    def range(
        self, expr: str, span_s: float, step_s: float, *, max_series: int | None = None
    ) -> list[Series]:
        """``expr`` on the grid of ``step_s`` ending at the evaluation time (aligned to the step);
        more than ``max_series`` series is an error (the kinds that model each series cost)."""
        step = max(1, int(step_s * 1000))
        end = self.time_ms - self.time_ms % step
        start = end - int(span_s * 1000) // step * step
        res = self.engine.range(expr, start, end, step)
        if max_series is not None and len(res.series) > max_series:
            raise QueryLimitError(
                f"{expr} gives {len(res.series)} series, more than max_series={max_series} "
                "this rule may model; narrow it down or raise max_series"
            )
        return res.series


class RuleKind(Protocol):
    name: str
    params: type[KindParams]

    def expressions(self, params: Any) -> list[tuple[str, str]]:
        """``(key, PromQL text)`` of every expression among ``params``."""
        ...

    def evaluate(self, params: Any, ctx: KindContext) -> list[Finding]: ...


# --- shared helpers --------------------------------------------------------------------------


def without_name(labels: LabelSet) -> dict[str, str]:
    return {k: v for k, v in labels if k != METRIC_NAME}


def output_selector(source: str, output: str) -> str:
    """The selector of a model output (``anomaly_score``, ``yhat``...) of source series.

    vmanomaly's naming: the output has the source's labels, its metric name in
    a ``for`` label. ``http_latency{job="api"}`` → ``anomaly_score{for="http_latency",job="api"}``.
    """
    sel = parse_selector(source)
    parts = [f'__name__="{output}"']
    for m in sel.matchers:
        name = "for" if m.name == METRIC_NAME else m.name
        parts.append(f"{name}{m.op.value}{_quote(m.value)}")
    return "{" + ",".join(parts) + "}"


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def label_matchers(labels: Mapping[str, str]) -> str:
    """``{a="b",...}`` selecting exactly these label values (``__name__`` included if present)."""
    return "{" + ",".join(f"{k}={_quote(v)}" for k, v in sorted(labels.items())) + "}"


def exact(name: str, value: str) -> Matcher:
    return Matcher(name, MatchOp.EQ, value)


def fmt_when(t: float | None, now: float) -> str:
    """``in 5h 12m (2026-01-02 10:00 UTC)`` or ``beyond the horizon``."""
    if t is None or not math.isfinite(t):
        return "beyond the horizon"
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if t <= now:
        return f"now ({stamp})"
    return f"in {short_duration(t - now)} ({stamp})"


def short_duration(seconds: float) -> str:
    """``5h 12m``, ``3d 4h``, ``45s``: the two largest units."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts[:2])


def crossing_explanation(
    *,
    kind: str,
    now: float,
    value: float,
    threshold: float,
    expected: float | None,
    earliest: float | None,
    latest: float | None,
    interval: str,
    confidence: float,
    band: Mapping[str, object] | None = None,
    **extra: object,
) -> dict[str, object]:
    """The explanation of a predicted crossing (keys documented in the module docstring)."""
    return {
        "kind": kind,
        "now": now,
        "value": value,
        "threshold": threshold,
        "crossing": {
            "expected": expected,
            "earliest": earliest,
            "latest": latest,
            "interval": interval,
        },
        "confidence": confidence,
        "band": dict(band or {}),
        **extra,
    }


def crossing_annotations(what: str, explanation: Mapping[str, Any]) -> dict[str, str]:
    """``prediction`` (a sentence) and ``confidence`` (a percentage) of a crossing explanation."""
    c = explanation["crossing"]
    now = float(explanation["now"])
    lo, hi = [*c["interval"].split("-"), "", ""][:2]
    sentence = (
        f"{what} expected {fmt_when(c['expected'], now)}; "
        f"{lo} {fmt_when(c['earliest'], now)}, {hi} {fmt_when(c['latest'], now)}"
    )
    return {
        "prediction": sentence,
        "confidence": f"{100 * float(explanation['confidence']):.0f}%",
        "predicted_at": "" if c["expected"] is None else f"{float(c['expected']):.0f}",
    }


def value_text(v: float) -> str:
    return humanize(v)


def duration_text(seconds: float) -> str:
    return humanize_duration(seconds)


def normal_cdf(z: np.ndarray | float) -> np.ndarray | float:
    from scipy.special import ndtr

    return ndtr(z)


def normal_ppf(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def reachable(history: np.ndarray, gap: float, h: int, above: bool) -> np.ndarray:
    """For each step ``k`` of ``1..h``: has the history ever moved by ``gap`` (up when
    ``above``, down otherwise) within ``k`` steps? Gaps are judged on the finite points."""
    x = history if above else -history
    need = gap if above else -gap
    out = np.zeros(h, bool)
    if need <= 0:
        out[:] = True
        return out
    best = -np.inf
    for k in range(1, h + 1):
        if k < x.size:
            best = max(best, float(np.max(x[k:] - x[:-k])))
        out[k - 1] = best >= need
    return out


def group_key(labels: Mapping[str, str], by: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, labels.get(k, "")) for k in by)
