"""Parsing of query parameters shared by the HTTP APIs (times, durations, selectors)."""

from __future__ import annotations

import math
from datetime import datetime

from fastapi import Request

from perfintel.config import parse_duration
from perfintel.errors import BadInputError, ParseError
from perfintel.model import Selector, parse_selector


def parse_time(value: str, name: str) -> float:
    """Unix seconds (fractional allowed) or RFC3339, as the Prometheus API takes them."""
    text = value.strip()
    try:
        t = float(text)
        if not math.isfinite(t):
            raise ValueError
        return t
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadInputError(
            f"invalid parameter {name!r}: cannot parse {value!r} to a valid timestamp"
        ) from None


def parse_step(value: str, name: str = "step") -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise BadInputError(
            f"invalid parameter {name!r}: cannot parse {value!r} to a valid duration"
        ) from None
    if seconds <= 0:
        raise BadInputError(
            f"invalid parameter {name!r}: zero or negative query resolution step widths are not accepted"
        )
    return seconds


def selectors_param(request: Request, *, required: bool, name: str = "match[]") -> list[Selector]:
    raw = request.query_params.getlist(name) or request.query_params.getlist("match")
    if not raw and required:
        raise BadInputError(f"invalid parameter {name!r}: at least one series selector is required")
    out = []
    for text in raw:
        try:
            out.append(parse_selector(text))
        except ParseError as exc:
            raise BadInputError(f"invalid parameter {name!r}: {exc}") from exc
    return out
