"""Optimisation recommendations over HTTP: ``POST /api/v1/performance/optimize/recommendations``.

Runs the registered recommendation rules (the ``perfintel.recommendations``
entry points; ``kinds`` picks some) over the stored metrics of the window
(:mod:`perfintel.performance.recommendations`, on a worker thread) and
returns each finding with its evidence, confidence and monthly impact under
the cost model of the settings (``recommendations.cost``), which the body may
override for one request.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from perfintel.analysis.recommend import CostModel, Recommendation
from perfintel.api.analyze import duration_ms, run_timed
from perfintel.api.auth import require
from perfintel.api.params import TimeValue
from perfintel.api.responses import JSONResponse
from perfintel.config import Settings
from perfintel.errors import BadInputError
from perfintel.performance import recommendations as rec
from perfintel.storage.base import SampleReader

router = APIRouter(tags=["performance"])

RECOMMENDATIONS_PATH = "/api/v1/performance/optimize/recommendations"
MAX_DAYS = 90


class CostIn(BaseModel):
    """Prices for this request (each defaults to the configured one)."""

    model_config = ConfigDict(extra="forbid")

    core_hour: float | None = Field(None, ge=0)
    memory_gib_month: float | None = Field(None, ge=0)
    disk_gib_month: float | None = Field(None, ge=0)
    currency: str | None = Field(None, min_length=1, max_length=8)


class RecommendationsRequest(BaseModel):
    """Recommendations from the usage of the last ``window`` before ``end``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {"window": "14d", "kinds": ["overprovisioned"], "cost": {"core_hour": 0.05}},
            ]
        },
    )

    window: str | None = Field(
        None, description="History looked at (default the recommendations.window setting, 14d)."
    )
    end: TimeValue | None = Field(None, description="End of the window; default now.")
    kinds: list[str] | None = Field(
        None, max_length=100, description="Recommendation kinds to run (default: all registered)."
    )
    cost: CostIn | None = Field(None, description="Price overrides for this request.")
    limit: int = Field(200, ge=1, le=10_000, description="Recommendations returned.")


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def render_recommendation(r: Recommendation) -> dict[str, Any]:
    res = r.resource
    return {
        "kind": r.kind,
        "resource": {
            "kind": res.kind,
            "level": res.level,
            "entity": dict(res.entity),
            "capacity": _num(res.capacity),
            "series": [dict(s) for s in res.series],
        },
        "title": r.title,
        "action": r.action,
        "current": _num(r.current),
        "proposed": _num(r.proposed),
        "confidence": r.confidence,
        "impact": (
            {
                "monthly_cost": r.impact.monthly_cost,
                "amount": r.impact.amount,
                "unit": r.impact.unit,
                "unit_price": r.impact.unit_price,
                "formula": r.impact.formula,
                "currency": r.impact.currency,
            }
            if r.impact is not None
            else None
        ),
        "evidence": [
            {
                "name": e.name,
                "value": _num(e.value),
                "unit": e.unit,
                "series": [dict(s) for s in e.series],
            }
            for e in r.evidence
        ],
        "extra": {k: _num(v) for k, v in r.extra.items()},
    }


def cost_model(settings: Settings, override: CostIn | None) -> CostModel:
    c = settings.recommendations.cost
    base = CostModel(
        c.core_hour, c.memory_gib_month, c.disk_gib_month, c.hours_per_month, c.currency
    )
    if override is None:
        return base
    return CostModel(
        override.core_hour if override.core_hour is not None else base.core_hour,
        override.memory_gib_month
        if override.memory_gib_month is not None
        else base.memory_gib_month,
        override.disk_gib_month if override.disk_gib_month is not None else base.disk_gib_month,
        base.hours_per_month,
        override.currency or base.currency,
    )


@router.post(
    RECOMMENDATIONS_PATH,
    dependencies=[Depends(require("read"))],
    summary="Optimisation recommendations (right-sizing, leaks, headroom) with costed impact",
    responses={
        400: {"description": "Bad input; the message names the field"},
        422: {"description": "The query limits were crossed"},
    },
)
async def optimize_recommendations(request: Request, body: RecommendationsRequest) -> Response:
    settings = request.app.state.settings
    window_ms = (
        duration_ms(body.window, "window")
        if body.window
        else round(settings.recommendations.window * 1000)
    )
    days = window_ms / 86_400_000
    if not 1 <= days <= MAX_DAYS:
        raise BadInputError(f"invalid parameter 'window': between 1d and {MAX_DAYS}d")
    end = round(float(body.end) * 1000) if body.end is not None else int(time.time() * 1000)
    cost = cost_model(settings, body.cost)

    def work(store: SampleReader, max_samples: int | None) -> rec.RecommendationsReport:
        return rec.recommend(store, end, days, cost, kinds=body.kinds, max_samples=max_samples)

    rep = await run_timed(request, "optimize_recommendations", work)
    shown = rep.recommendations[: body.limit]
    out = {
        "status": "success",
        "data": {
            "start": rep.grid.start_ms,
            "end": rep.grid.time(rep.grid.size - 1),
            "step_seconds": rep.grid.step_ms / 1000,
            "resources": rep.resources,
            "history_hours": rep.history_hours,
            "note": rep.note,
            "cost_model": {
                "core_hour": cost.core_hour,
                "memory_gib_month": cost.memory_gib_month,
                "disk_gib_month": cost.disk_gib_month,
                "hours_per_month": cost.hours_per_month,
                "currency": cost.currency,
            },
            "monthly_saving": -sum(
                r.impact.monthly_cost
                for r in rep.recommendations
                if r.impact is not None and r.impact.monthly_cost < 0
            ),
            "monthly_extra_cost": sum(
                r.impact.monthly_cost
                for r in rep.recommendations
                if r.impact is not None and r.impact.monthly_cost > 0
            ),
            "recommendations": [render_recommendation(r) for r in shown],
            "total": len(rep.recommendations),
            "failures": [{"rule": f.rule, "error": f.error} for f in rep.failures],
            "skipped_rules": rep.skipped_rules,
        },
    }
    return JSONResponse(out)
