"""Parsing of request parameters shared by the HTTP APIs (times, durations, selectors).

Every time and duration goes through :mod:`perfintel.timeparse` (one syntax for
every endpoint): these are the adapters for query strings and JSON bodies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Request
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from perfintel.errors import BadInputError, ParseError
from perfintel.model import Selector, parse_selector
from perfintel.timeparse import (
    DURATION_HELP,
    TIME_HELP,
    parse_duration_ms,
    parse_time_ms,
)


def positive_duration_ms(value: str | float, name: str) -> int:
    """A duration that must be positive (a step, a horizon), in ms."""
    ms = parse_duration_ms(value, name)
    if ms <= 0:
        raise BadInputError(
            f"invalid parameter {name!r}: zero or negative durations are not accepted"
        )
    return ms


def optional_time_ms(value: str | None, name: str, default: int) -> int:
    return parse_time_ms(value, name) if value else default


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


def _time_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be {TIME_HELP}")
    return parse_time_ms(value) / 1000


def _duration_ms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be {DURATION_HELP}")
    return parse_duration_ms(value)


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be a positive duration")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return value


_DURATION_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "number"}], "description": DURATION_HELP}
)

#: A series selector, checked when the body is read (the raw text is kept).
SelectorText = Annotated[str, AfterValidator(valid_selector)]
#: A time (``perfintel.timeparse``: Unix seconds, RFC 3339, ``now-1h``), read as float seconds.
TimeValue = Annotated[
    float,
    BeforeValidator(_time_seconds),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}], "description": TIME_HELP}),
]
#: A positive duration (``perfintel.timeparse``: ``5m``, ``1h30m``, ``1.5h``, ``90``), read as ms.
PositiveDurationMs = Annotated[
    int, BeforeValidator(_duration_ms), AfterValidator(_positive), _DURATION_SCHEMA
]
#: A duration that may be zero, read as ms.
DurationMs = Annotated[
    int, BeforeValidator(_duration_ms), AfterValidator(_non_negative), _DURATION_SCHEMA
]
