"""Parsing of query parameters shared by the HTTP APIs (times, durations, selectors)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Request
from pydantic import AfterValidator

from perfintel.config import parse_duration
from perfintel.errors import BadInputError, ParseError
from perfintel.model import Selector, parse_selector

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)
_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def parse_time_ms(value: str, name: str) -> int:
    """Unix seconds (fractional, rounded to ms) or RFC 3339, to milliseconds."""
    try:
        f = float(value)
    except ValueError:
        f = math.nan
    else:
        if math.isfinite(f):
            secs = math.trunc(f)
            frac = round((f - secs) * 1000) / 1000
            return int(secs) * 1000 + round(frac * 1000)
    m = _RFC3339_RE.match(value)
    if m:
        try:
            dt = datetime.fromisoformat(
                m.group(1) + (m.group(3) or "+00:00").replace("Z", "+00:00").replace("z", "+00:00")
            )
        except ValueError:
            dt = None
        if dt is not None:
            frac_ms = int((m.group(2) or "0").ljust(3, "0")[:3])
            return (dt - _EPOCH) // timedelta(seconds=1) * 1000 + frac_ms
    raise BadInputError(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp')


def parse_duration_ms(value: str, name: str) -> int:
    """Float seconds or a Prometheus duration (``1h30m``), to milliseconds."""
    try:
        f = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(f) or abs(f) > 9.2e9:
            raise BadInputError(
                f'invalid parameter "{name}": cannot parse "{value}" to a valid duration. It overflows int64'
            )
        return int(f * 1000)
    m = _DURATION_RE.match(value)
    if value and m and any(m.groups()):
        return sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_MS, strict=True) if g)
    raise BadInputError(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration')


def parse_time(value: str, name: str) -> float:
    """Unix seconds or RFC3339, as the Prometheus API takes them, to float seconds."""
    return parse_time_ms(value, name) / 1000


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


# -- pydantic field types of the JSON request bodies ---------------------------------


def valid_selector(value: str) -> str:
    try:
        parse_selector(value)
    except ParseError as exc:
        raise ValueError(str(exc)) from None
    return value


def _seconds(value: float | str) -> float:
    try:
        return parse_time(str(value), "time")
    except BadInputError:
        raise ValueError("must be Unix seconds or RFC3339") from None


#: A series selector, checked when the body is read (the raw text is kept).
SelectorText = Annotated[str, AfterValidator(valid_selector)]
#: Unix seconds or RFC3339, read as float seconds.
TimeValue = Annotated[float | str, AfterValidator(_seconds)]
