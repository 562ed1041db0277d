"""Alertmanager time intervals: when a route is muted or active.

A named time interval is a list of ``TimeInterval`` entries; an instant is in
the named interval when ANY entry contains it, and an entry contains it when
EVERY field it sets does (``times``, ``weekdays``, ``days_of_month``,
``months``, ``years``, evaluated in ``location``, UTC by default). Ranges are
inclusive (``monday:friday``, ``1:5``); negative days of the month count from
the end (``-1`` is the last day). ``times`` are half-open ``[start, end)``
minutes of the day, ``end_time`` may be ``24:00``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Sunday first, as in Alertmanager: "saturday:sunday" is an error there (and here).
_WEEKDAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
_MONTHS = [m.lower() for m in calendar.month_name[1:]]


class IntervalError(ValueError):
    """A field of a time interval is invalid; the message names it."""


@dataclass(frozen=True)
class TimeInterval:
    times: tuple[tuple[int, int], ...] = ()  # minutes of day, [start, end)
    weekdays: tuple[tuple[int, int], ...] = ()  # 0 = Sunday
    days_of_month: tuple[tuple[int, int], ...] = ()
    months: tuple[tuple[int, int], ...] = ()  # 1..12
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"
    _zone: ZoneInfo = field(default=ZoneInfo("UTC"), compare=False, repr=False)

    def contains(self, ts: float) -> bool:
        t = dt.datetime.fromtimestamp(ts, self._zone)
        if self.times:
            minute = t.hour * 60 + t.minute
            if not any(a <= minute < b for a, b in self.times):
                return False
        weekday = (t.weekday() + 1) % 7
        if self.weekdays and not any(a <= weekday <= b for a, b in self.weekdays):
            return False
        if self.days_of_month:
            last = calendar.monthrange(t.year, t.month)[1]
            if not any(_day(a, last) <= t.day <= _day(b, last) for a, b in self.days_of_month):
                return False
        if self.months and not any(a <= t.month <= b for a, b in self.months):
            return False
        return not self.years or any(a <= t.year <= b for a, b in self.years)


def in_any(intervals: Sequence[TimeInterval], ts: float) -> bool:
    return any(i.contains(ts) for i in intervals)


def parse_interval(data: Mapping[str, object]) -> TimeInterval:
    known = {"times", "weekdays", "days_of_month", "months", "years", "location"}
    for key in data:
        if key not in known:
            raise IntervalError(f"unknown field {key!r} in a time interval")
    location = str(data.get("location") or "UTC")
    try:
        zone = ZoneInfo("UTC" if location in ("UTC", "Local") else location)
    except (ZoneInfoNotFoundError, ValueError):
        raise IntervalError(f"location {location!r} is not a known time zone") from None
    return TimeInterval(
        times=tuple(_times(t) for t in _list(data, "times")),
        weekdays=tuple(_range(str(w), "weekdays", _weekday) for w in _list(data, "weekdays")),
        days_of_month=tuple(_days(str(d)) for d in _list(data, "days_of_month")),
        months=tuple(_range(str(m), "months", _month) for m in _list(data, "months")),
        years=tuple(_range(str(y), "years", _year) for y in _list(data, "years")),
        location=location,
        _zone=zone,
    )


def _list(data: Mapping[str, object], key: str) -> list[object]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise IntervalError(f"{key} must be a list")
    return value


def _day(d: int, last: int) -> int:
    return d if d > 0 else last + 1 + d


def _clock(text: str, what: str) -> int:
    try:
        h, m = text.split(":")
        hour, minute = int(h), int(m)
    except ValueError:
        raise IntervalError(f"{what} {text!r} is not HH:MM") from None
    if not (0 <= hour <= 24 and 0 <= minute < 60) or (hour == 24 and minute):
        raise IntervalError(f"{what} {text!r} is out of range")
    return hour * 60 + minute


def _times(item: object) -> tuple[int, int]:
    if not isinstance(item, Mapping) or set(item) - {"start_time", "end_time"}:
        raise IntervalError("times entries need start_time and end_time")
    start = _clock(str(item.get("start_time", "")), "start_time")
    end = _clock(str(item.get("end_time", "")), "end_time")
    if end <= start:
        raise IntervalError("end_time must be after start_time")
    return start, end


def _range(text: str, what: str, one: object) -> tuple[int, int]:
    parse = one  # a callable str -> int
    parts = text.split(":")
    if len(parts) > 2:
        raise IntervalError(f"{what} range {text!r} has more than one ':'")
    lo = parse(parts[0].strip())  # type: ignore[operator]
    hi = parse(parts[-1].strip())  # type: ignore[operator]
    if hi < lo:
        raise IntervalError(f"start day cannot be before end day ({what} {text!r})")
    return int(lo), int(hi)


def _weekday(text: str) -> int:
    if text.lower() not in _WEEKDAYS:
        raise IntervalError(f"{text!r} is not a weekday")
    return _WEEKDAYS.index(text.lower())


def _month(text: str) -> int:
    if text.lower() in _MONTHS:
        return _MONTHS.index(text.lower()) + 1
    if text.isdigit() and 1 <= int(text) <= 12:
        return int(text)
    raise IntervalError(f"{text!r} is not a month")


def _year(text: str) -> int:
    if not text.isdigit():
        raise IntervalError(f"{text!r} is not a year")
    return int(text)


def _days(text: str) -> tuple[int, int]:
    parts = text.split(":")
    try:
        lo, hi = int(parts[0]), int(parts[-1])
    except ValueError:
        raise IntervalError(f"days_of_month {text!r} is not a day or range of days") from None
    for d in (lo, hi):
        if d == 0 or not -31 <= d <= 31:
            raise IntervalError(f"days_of_month {text!r}: days are 1..31 or -31..-1")
    if len(parts) > 2 or ((lo > 0) == (hi > 0) and hi < lo):
        raise IntervalError(f"days_of_month range {text!r} ends before it starts")
    return lo, hi
