"""Correlation, root cause and change impact over stored metrics, over HTTP.

* ``POST /api/v1/performance/analyze/correlations`` — what moved together, and what moved first;
* ``POST /api/v1/performance/analyze/root-cause`` — the series ranked as an incident's root cause;
* ``POST /api/v1/performance/analyze/change-impact`` — the effect of a change, with an interval.

Thin adapters: the bodies are validated by pydantic (unknown fields, bad
selectors, times and numbers are HTTP 400 naming the field; durations are
checked in the handler and named the same way), the work runs in
:mod:`perfintel.performance.rca` on a worker thread, non-finite numbers are
rendered as ``null``. No series with data is HTTP 404; more series than an
analysis takes is HTTP 422.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from perfintel.analysis.rootcause import Cause, DependencyGraph
from perfintel.analysis.rootcause.parts import PartGroup
from perfintel.api.auth import require
from perfintel.api.params import SelectorText, TimeValue, parse_duration_ms
from perfintel.api.responses import JSONResponse
from perfintel.errors import BadInputError, NotFoundError
from perfintel.model import LabelSet, parse_selector
from perfintel.performance import rca
from perfintel.performance.expression import parse_analysis_query
from perfintel.performance.incident_rca import IncidentScope, incident_scope
from perfintel.storage.base import SampleReader

router = APIRouter(tags=["performance"])
T = TypeVar("T")

CORRELATIONS_PATH = "/api/v1/performance/analyze/correlations"
ROOT_CAUSE_PATH = "/api/v1/performance/analyze/root-cause"
CHANGE_IMPACT_PATH = "/api/v1/performance/analyze/change-impact"
DAY_MS = 86_400_000
#: the correlation matrix is returned up to this many series
MATRIX_MAX = 200

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input; the message names the field"},
    404: {"description": "No series with data in the range"},
    422: {"description": "More series than the analysis takes, or the query limits were crossed"},
}


# -- shared ---------------------------------------------------------------------------------


def duration_ms(value: str, name: str, *, positive: bool = True) -> int:
    ms = parse_duration_ms(value, name)
    if positive and ms <= 0:
        raise BadInputError(f"invalid parameter {name!r}: must be a positive duration")
    return ms


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(t: float | str | None, default: int) -> int:
    return default if t is None else round(float(t) * 1000)


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _floats(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


async def run_timed(
    request: Request, endpoint: str, work: Callable[[SampleReader, int | None], T]
) -> T:
    """``work(store, max_samples)`` on a worker thread, timed into the query-duration metric."""
    store = request.app.state.store
    max_samples = request.app.state.query_settings.max_samples
    t0 = time.perf_counter()
    out = await run_in_threadpool(work, store, max_samples)
    request.app.state.metrics.query_duration.labels(endpoint=endpoint).observe(
        time.perf_counter() - t0
    )
    return out


def auto_step_ms(span_ms: int) -> int:
    """One minute up to a day of range, five minutes up to a week, then an hour."""
    if span_ms <= DAY_MS:
        return 60_000
    if span_ms <= 7 * DAY_MS:
        return 300_000
    return 3_600_000


# -- correlations ---------------------------------------------------------------------------


class CorrelationRequest(BaseModel):
    """Pairwise correlation of the series of ``selectors`` (and ``target``) over a range."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "selectors": ['{__name__=~"node_load1|pg_stat_activity_count"}'],
                    "max_lag": "10m",
                },
                {
                    "target": 'request_latency_seconds{service="checkout"}',
                    "selectors": ["db_connections"],
                },
            ]
        },
    )

    selectors: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Series selectors or PromQL expressions (a result is named by its "
        "expression); the series of all of them are correlated pairwise "
        f"(at most {rca.MAX_CORRELATION_SERIES} series in all).",
    )
    target: str | None = Field(
        None,
        description="One series (a selector or an expression) to correlate against the "
        "others (listed first).",
    )
    start: TimeValue | None = Field(None, description="Unix seconds or RFC3339; default end − 1d.")
    end: TimeValue | None = Field(None, description="Unix seconds or RFC3339; default now.")
    step: str | None = Field(
        None, description="Grid step (default: 1m up to a day of range, 5m up to a week, else 1h)."
    )
    max_lag: str = Field("30m", description="Largest lead or lag searched.")
    alpha: float = Field(
        0.05, gt=0, lt=1, description="False-discovery rate of 'significant' (Benjamini–Hochberg)."
    )
    limit: int = Field(50, ge=1, le=10_000, description="Pairs returned, most significant first.")
    matrix: bool = Field(
        True, description=f"Return the cross-correlation matrix (up to {MATRIX_MAX} series)."
    )

    @model_validator(mode="after")
    def _something(self) -> CorrelationRequest:
        if not self.selectors and self.target is None:
            raise ValueError("give 'selectors' (and optionally a 'target')")
        return self


def render_correlations(rep: rca.CorrelationReport, body: CorrelationRequest) -> dict[str, Any]:
    res = rep.result
    step_s = rep.grid.step_ms / 1000
    pairs = [
        {
            "a": p.a,
            "b": p.b,
            "lag_steps": p.lag,
            "lag_seconds": p.lag * step_s,
            "xcorr": p.xcorr,
            "pearson": p.pearson,
            "spearman": p.spearman,
            "p_value": p.p_value,
            "q_value": p.q_value,
            "significant": p.significant,
        }
        for p in res.pairs.rows(body.limit)
    ]
    n = len(rep.labels)
    matrix = None
    if body.matrix and n <= MATRIX_MAX:
        matrix = {"xcorr": _floats(res.xcorr), "lag_seconds": _floats(res.lag * step_s)}
    return {
        "status": "success",
        "data": {
            "start": rep.grid.start_ms,
            "end": rep.grid.time(rep.grid.size - 1),
            "step_seconds": step_s,
            "source": rep.source,
            "points": res.points,
            "max_lag_steps": res.max_lag,
            "alpha": res.alpha,
            "seasons_removed_steps": list(res.seasons),
            "target": rep.target,
            "series": [
                {"labels": dict(ls), "usable": bool(u), "reason": r or None}
                for ls, u, r in zip(rep.labels, res.usable, res.reasons, strict=True)
            ],
            "pairs_tested": len(res.pairs),
            "why_no_pairs": res.why_no_pairs,
            "significant_pairs": int(np.sum(res.pairs.significant)),
            "pairs": pairs,
            "leaders": [
                {
                    "index": ld.index,
                    "labels": dict(rep.labels[ld.index]),
                    "score": ld.score,
                    "leads": ld.leads,
                    "follows": ld.follows,
                    "together": ld.together,
                }
                for ld in res.leaders
            ],
            "matrix": matrix,
        },
    }


@router.post(
    CORRELATIONS_PATH,
    dependencies=[Depends(require("read"))],
    summary="Pairwise correlation (Pearson, Spearman, best lag) with false-discovery control",
    responses=_ERRORS,
)
async def analyze_correlations(request: Request, body: CorrelationRequest) -> Response:
    end = _ms(body.end, _now_ms())
    start = _ms(body.start, end - DAY_MS)
    if start >= end:
        raise BadInputError("invalid parameter 'start': start is not before end")
    step = duration_ms(body.step, "step") if body.step else auto_step_ms(end - start)
    max_lag = duration_ms(body.max_lag, "max_lag", positive=False) // step
    settings = request.app.state.query_settings
    selectors = [
        parse_analysis_query(s, settings, name=f"selectors.{i}")
        for i, s in enumerate(body.selectors)
    ]
    target = parse_analysis_query(body.target, settings, name="target") if body.target else None

    def work(store: SampleReader, max_samples: int | None) -> rca.CorrelationReport:
        return rca.correlations(
            store,
            selectors,
            start,
            end,
            step,
            target=target,
            max_lag_steps=max_lag,
            alpha=body.alpha,
            max_samples=max_samples,
            settings=settings,
        )

    rep = await run_timed(request, "analyze_correlations", work)
    return JSONResponse(render_correlations(rep, body))


# -- root cause -----------------------------------------------------------------------------


class Dependency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    caller: str = Field(min_length=1, max_length=200)
    callee: str = Field(min_length=1, max_length=200)


class RootCauseRequest(BaseModel):
    """Rank the series of ``selector`` as the root cause of an incident at ``time``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"selector": '{job=~"checkout|postgres"}', "time": "2026-01-15T12:05:00Z"},
                {
                    "selector": '{service=~".+"}',
                    "time": 1768478700,
                    "window": "30m",
                    "baseline": "3h",
                    "limit": 5,
                    "dependencies": [{"caller": "checkout", "callee": "postgres"}],
                },
            ]
        },
    )

    selector: SelectorText | None = Field(
        None, description="The candidate series (a PromQL selector); with incident: optional."
    )
    time: TimeValue | None = Field(
        None, description="The incident's time: Unix seconds or RFC3339; with incident: optional."
    )
    incident: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="An alerting incident's id, instead of time and selector: the time is when "
        "its first alert started, the candidates the series of its alerts' services (and the "
        "services they depend on), hosts, instances or jobs.",
    )
    window: str = Field(
        "30m",
        description="How long before the time changes are sought. A cause may also begin after "
        "the time: up to the first symptom (latency, errors) that began after it, at most 10 "
        "minutes later (asked as a fault begins, its root is dated a step or more later); a "
        "symptom that began later than a step after the time is an effect, not a cause. When "
        "the largest symptom had already begun as the window opens, or began within "
        "max_propagation of it (asked at the end of an incident's data, long after the alert), "
        "the window opens back half its length more: a root begun before the symptoms is seen "
        "with its onset (the evidence starts there).",
    )
    baseline: str = Field("3h", description="The normal behaviour before the window.")
    limit: int = Field(10, ge=1, le=1000, description="Causes returned, most likely first.")
    step: str = Field(
        "auto",
        description="Grid step of the analysis; auto: the interval the candidates are sampled "
        "at (at most 2,000 steps).",
    )
    max_propagation: str = Field(
        "5m", description="Longest delay of one hop from a cause to what it explains."
    )
    dependencies: list[Dependency] | None = Field(
        None,
        max_length=10_000,
        description="Declared dependencies (caller calls callee: a fault in the callee can "
        "reach the caller), by the value of dependency_label.",
    )
    dependency_label: str = Field("service", min_length=1, max_length=200)


def render_cause(group: PartGroup[Cause], labels: list[LabelSet], step_ms: int) -> dict[str, Any]:
    """One cause, with the other parts of its measurement that changed (other cores of the
    machine, other buckets of the histogram), each with its onset and σ."""
    c = group.first
    return {
        "labels": dict(c.labels),
        "part_label": group.part_label if group.others else None,
        "parts": [
            {"labels": dict(o.labels), "onset": _rfc3339(o.onset_ms), "sigma": o.sigma}
            for o in group.others
        ],
        "score": c.score,
        "onset": _rfc3339(c.onset_ms),
        "onset_unix": c.onset_ms / 1000,
        "peak": _rfc3339(c.peak_ms),
        "sigma": c.sigma,
        "constant_before": c.constant_before,
        "shape": c.shape,
        "explanation": c.explanation,
        "followers": [
            {"labels": dict(labels[f.index]), "lag_seconds": f.lag_ms / 1000} for f in c.followers
        ],
        "explained_by": dict(labels[c.explained_by]) if c.explained_by is not None else None,
        "evidence": {
            "start": c.window_start_ms,
            "step_seconds": step_ms / 1000,
            "values": _floats(c.values),
            "expected": _floats(c.expected),
            "z": _floats(c.z),
        },
    }


@router.post(
    ROOT_CAUSE_PATH,
    dependencies=[Depends(require("read"))],
    summary="Root cause of an incident: the candidate series ranked, with onsets and explanations",
    responses=_ERRORS,
    response_description='{"status": "success", "data": {"causes": [{"labels", "score", "onset", '
    '"explanation", "sigma", "constant_before", "shape", "followers", "evidence", "part_label", "parts"}]}}',
)
async def analyze_root_cause(request: Request, body: RootCauseRequest) -> Response:
    scope = await _incident_scope(request, body.incident) if body.incident else None
    if scope is not None:
        selector = parse_selector(body.selector or scope.selector)
        at = round(float(body.time) * 1000) if body.time is not None else scope.time_ms
    elif body.selector is not None and body.time is not None:
        selector = parse_selector(body.selector)
        at = round(float(body.time) * 1000)
    else:
        raise BadInputError("give either incident, or both time and selector")
    window = duration_ms(body.window, "window")
    baseline = duration_ms(body.baseline, "baseline")
    step = None if body.step == "auto" else duration_ms(body.step, "step")
    prop = duration_ms(body.max_propagation, "max_propagation", positive=False)
    graph = scope.graph if scope is not None else None
    if body.dependencies:
        graph = DependencyGraph.from_edges(
            [(d.caller, d.callee) for d in body.dependencies], body.dependency_label
        )

    def work(store: SampleReader, max_samples: int | None) -> rca.RootCauseReport:
        return rca.root_causes(
            store,
            selector,
            at,
            window_ms=window,
            baseline_ms=baseline,
            step_ms=step,
            limit=body.limit,
            graph=graph,
            max_propagation_ms=prop,
            max_samples=max_samples,
            now_ms=_now_ms(),
        )

    rep = await run_timed(request, "analyze_root_cause", work)
    out = {
        "status": "success",
        "data": {
            "time": _rfc3339(at),
            "incident": body.incident,
            "selector": str(selector),
            "window_seconds": window / 1000,
            "baseline_seconds": baseline / 1000,
            "step_seconds": rep.grid.step_ms / 1000,
            "source": rep.source,
            "candidates": rep.candidates,
            "without_history": rep.without_history,
            "note": rep.note,
            "causes": [render_cause(g, rep.labels, rep.grid.step_ms) for g in rep.parts],
        },
    }
    return JSONResponse(out)


async def _incident_scope(request: Request, incident_id: str) -> IncidentScope:
    """Time and candidates of an alerting incident (live, else from the pipeline's database)."""
    from perfintel.api.alertmanager import pipeline_of

    p = pipeline_of(request)
    with p.lock:
        inc = p.core.incidents.get(incident_id)
        alerts = {fp: r.alert for fp, r in p.core.alerts.items() if inc and fp in inc.members}
        deps = dict(p.config.extensions.incidents.dependencies)
    if inc is None:
        inc = await run_in_threadpool(p.store.incident, incident_id)
        if inc is None:
            raise NotFoundError(f"incident {incident_id!r} not found")
    scopes: list[tuple[dict[str, str], float]] = []
    for fp, m in inc.members.items():
        a = alerts.get(fp)
        if a is not None:
            scopes.append((dict(a.labels), m.starts_at))
    if not scopes:  # its alerts are forgotten: the labels the incident indexed remain
        start = min((m.starts_at for m in inc.members.values()), default=inc.opened_at)
        scopes = [({k: v}, start) for k, v in sorted(inc.labels_index)]
    return incident_scope(scopes, deps)


# -- change impact ------------------------------------------------------------------------


class ChangeImpactRequest(BaseModel):
    """The effect of a change on the series of ``selector``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "selector": 'process_resident_memory_bytes{service="checkout"}',
                    "annotation": 'deploy_info{service="checkout"}',
                    "after": "2h",
                },
                {"selector": "http_requests_total", "change_time": "2026-01-15T12:00:00Z"},
            ]
        },
    )

    selector: str = Field(
        description=f"The metrics to assess (at most {rca.MAX_CHANGE_SERIES} series): a "
        "selector, or a PromQL expression evaluated at every step (a mean latency: "
        "rate(x_sum[5m]) / rate(x_count[5m]))."
    )
    change_time: TimeValue | None = Field(
        None, description="When the change happened: Unix seconds or RFC3339."
    )
    annotation: SelectorText | None = Field(
        None,
        description="Without change_time: series recording changes (deploy_info{version=…} "
        "appearing, changes_total incrementing); the latest change before end is assessed.",
    )
    end: TimeValue | None = Field(
        None, description="Where the search for changes in the annotation ends; default now."
    )
    before: str | None = Field(
        None,
        description="History the counterfactual is fitted on (default by the step: 3d of 1m, "
        "14d of 5m, 60d of 1h).",
    )
    after: str = Field("1h", description="Window after the change that is assessed.")
    step: str | None = Field(
        None, description="Grid step (default 1m up to 3h after, 5m up to 1d, else 1h)."
    )
    level: float = Field(0.9, gt=0, lt=1, description="Coverage of the interval.")

    @model_validator(mode="after")
    def _which_change(self) -> ChangeImpactRequest:
        if self.change_time is None and self.annotation is None:
            raise ValueError("give 'change_time' or an 'annotation' selector")
        return self


def render_change(rep: rca.ChangeImpactReport) -> dict[str, Any]:
    results = []
    for r in rep.results:
        i = r.impact
        results.append(
            {
                "labels": dict(r.labels),
                "observed": _num(i.observed),
                "expected": _num(i.expected),
                "effect": _num(i.effect),
                "lower": _num(i.lower),
                "upper": _num(i.upper),
                "relative": _num(i.relative),
                "relative_lower": _num(i.relative_lower),
                "relative_upper": _num(i.relative_upper),
                "significant": i.significant,
                "p_value": _num(i.p_value),
                "method": i.method,
                "calibration": i.calibration,
                "model": i.model,
                "timestamps": np.ascontiguousarray(r.timestamps, dtype=np.int64),
                "observed_values": _floats(r.observed),
                "counterfactual": _floats(i.counterfactual),
            }
        )
    return {
        "status": "success",
        "data": {
            "change_time": _rfc3339(rep.change_ms),
            "change_unix": rep.change_ms / 1000,
            "changes_found": [_rfc3339(t) for t in rep.changes],
            "annotation_series": [dict(ls) for ls in rep.annotation],
            "step_seconds": rep.grid.step_ms / 1000,
            "source": rep.source,
            "after_steps": rep.after_steps,
            "results": results,
            "skipped": [{"labels": dict(s.labels), "reason": s.reason} for s in rep.skipped],
        },
    }


@router.post(
    CHANGE_IMPACT_PATH,
    dependencies=[Depends(require("read"))],
    summary="Effect of a change (deploy) on metrics: counterfactual forecast, interval, significance",
    responses=_ERRORS,
)
async def analyze_change_impact(request: Request, body: ChangeImpactRequest) -> Response:
    settings = request.app.state.query_settings
    selector = parse_analysis_query(body.selector, settings, name="selector")
    annotation = parse_selector(body.annotation) if body.annotation else None
    after = duration_ms(body.after, "after")
    step = duration_ms(body.step, "step") if body.step else None
    before = duration_ms(body.before, "before") if body.before else None
    change = _ms(body.change_time, 0) if body.change_time is not None else None
    end = _ms(body.end, _now_ms())

    def work(store: SampleReader, max_samples: int | None) -> rca.ChangeImpactReport:
        return rca.change_impact(
            store,
            selector,
            change_ms=change,
            annotation=annotation,
            end_ms=end,
            before_ms=before,
            after_ms=after,
            step_ms=step,
            level=body.level,
            max_samples=max_samples,
            settings=settings,
        )

    rep = await run_timed(request, "analyze_change_impact", work)
    return JSONResponse(render_change(rep))
