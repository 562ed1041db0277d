"""Durations and times: one syntax for every endpoint, the settings and the CLI.

**Durations** (:func:`parse_duration_ms`, :func:`parse_duration_seconds`):

* Prometheus's duration syntax: numbers with units, largest unit first, each
  unit at most once — ``90s``, ``1h30m``, ``500ms``, ``1d``, ``2w``, ``1y``
  (``y`` = 365 days, ``w`` = 7 days). A number may have a fraction (``1.5h``),
  which Prometheus itself refuses but perfintel's request bodies always took;
* or a plain number of seconds, as the Prometheus HTTP API takes ``step`` and
  ``timeout``: ``15``, ``1.5``, ``1e3``. Only this form may be negative
  (``-5``), so callers can say "must be positive" rather than "cannot parse".

**Times** (:func:`parse_time_ms`):

* Unix seconds with an optional fraction: ``1700000000``, ``1700000000.123``;
* RFC 3339 with an optional fraction (to the nanosecond, kept to the
  millisecond) and a ``Z`` or ``±hh:mm`` offset: ``2026-11-26T10:00:00Z``,
  ``2026-11-26T11:00:00.5+01:00``;
* relative to now: ``now``, ``now-1h``, ``now+30m``, ``now-1.5d`` (a duration
  as above, without the plain-seconds form).

Both parse to integer milliseconds (sub-millisecond fractions are rounded).
Errors are :class:`~perfintel.errors.TimeParseError`, a ``BadInputError``
(HTTP 400) that is also a ``ValueError`` (so pydantic validators report it
as a validation error naming the field); the message quotes the text and
says what is accepted. Callers that know the parameter's name pass it as
``name`` and the message reads as the Prometheus API's
(``invalid parameter "step": cannot parse "x" to a valid duration``).

>>> parse_duration_ms("1h30m"), parse_duration_ms("1.5"), parse_duration_seconds("500ms")
(5400000, 1500, 0.5)
>>> parse_time_ms("2023-11-14T22:13:20.5Z")
1700000000500
>>> parse_time_ms("now-1h", now_ms=7_200_000)
3600000
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta

from perfintel.errors import TimeParseError

#: Milliseconds per unit, largest first (the order units must appear in).
UNITS_MS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
#: The longest duration and the farthest time from the epoch, in ms (about 292 years
#: / 292,000 years: Go's time.Duration and the Prometheus API's time range).
MAX_DURATION_MS = 2**63 // 1_000_000
MAX_TIME_MS = 2**63 // 1_000_000 * 1000

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_DURATION_RE = re.compile(
    "^" + "".join(f"(?:{_NUMBER}{unit})?" for unit in UNITS_MS) + "$",
)
#: Prometheus's own duration syntax: whole numbers only (what rule files accept).
_STRICT_DURATION_RE = re.compile("^" + "".join(rf"(?:\d+{unit})?" for unit in UNITS_MS) + "$")
_RFC3339_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)
_RELATIVE_RE = re.compile(r"^now\s*(?:([+-])\s*(\S+))?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DURATION_HELP = "a duration such as 90s, 1h30m, 500ms, 1.5h or a number of seconds"
TIME_HELP = "Unix seconds, RFC 3339 (2026-11-26T10:00:00Z) or now / now-1h"


def _fail(value: object, what: str, name: str | None, hint: str) -> TimeParseError:
    shown = str(value)
    if len(shown) > 64:
        shown = shown[:64] + "…"
    if name:  # a query parameter: word it as the Prometheus API does
        return TimeParseError(
            f'invalid parameter "{name}": cannot parse "{shown}" to a valid {what}'
        )
    return TimeParseError(f'cannot parse "{shown}" to a valid {what} ({hint})')


def _units_ms(text: str) -> int | None:
    """``1h30m`` → ms, or ``None`` when ``text`` is not in the unit syntax."""
    m = _DURATION_RE.match(text)
    if not text or m is None or not any(m.groups()):
        return None
    total = 0.0
    for number, unit_ms in zip(m.groups(), UNITS_MS.values(), strict=True):
        if number is not None:
            total += float(number) * unit_ms
    return round(total)


def parse_duration_ms(value: str | float, name: str | None = None) -> int:
    """A duration (see the module docstring) in milliseconds."""
    if isinstance(value, bool):
        raise _fail(value, "duration", name, DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        ms = _units_ms(text)
        if ms is not None:
            if ms > MAX_DURATION_MS:
                raise _fail(value, "duration", name, "it overflows int64")
            return ms
        try:
            seconds = float(text)
        except ValueError:
            raise _fail(value, "duration", name, DURATION_HELP) from None
        if math.isnan(seconds) or text.lower().lstrip("+-") in ("inf", "infinity"):
            raise _fail(value, "duration", name, DURATION_HELP)
    if not math.isfinite(seconds) or abs(seconds) * 1000 > MAX_DURATION_MS:
        raise _fail(value, "duration", name, "it overflows int64")
    return round(seconds * 1000)


def format_duration_ms(ms: int) -> str:
    """A duration as Prometheus writes one, largest unit first (``1h30m``, ``15d``, ``0s``).

    >>> format_duration_ms(5_400_000), format_duration_ms(1_296_000_000), format_duration_ms(1500)
    ('1h30m', '2w1d', '1s500ms')
    """
    if ms == 0:
        return "0s"
    sign, rest, parts = "-" if ms < 0 else "", abs(int(ms)), []
    for unit, size in UNITS_MS.items():
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return sign + "".join(parts)


def parse_duration_seconds(value: str | float, name: str | None = None) -> float:
    """A duration (see the module docstring) in seconds, to the millisecond."""
    return parse_duration_ms(value, name) / 1000


def parse_prometheus_duration_seconds(value: object) -> float:
    """Seconds of a duration in Prometheus's own strict syntax, as rule files use it.

    Whole numbers with units, largest first (``1h30m``, ``5m``), or ``0``: no fractions and
    no plain seconds, since Prometheus refuses those in a rule file and a file must load the
    same way in both. Raises ``TimeParseError`` (a ``ValueError``) otherwise.
    """
    ok = isinstance(value, str | int) and not isinstance(value, bool)
    text = str(value).strip() if ok else ""
    if text == "0":
        return 0.0
    if not text or not _STRICT_DURATION_RE.match(text):
        raise TimeParseError(f'not a valid duration string: "{value}"')
    return parse_duration_seconds(text)


def parse_time_ms(value: str | float, name: str | None = None, *, now_ms: int | None = None) -> int:
    """A time (see the module docstring) as Unix milliseconds; ``now_ms`` defaults to the clock."""
    if isinstance(value, bool):
        raise _fail(value, "timestamp", name, TIME_HELP)
    if isinstance(value, int | float):
        ms = _seconds_to_ms(float(value))
    else:
        text = value.strip()
        ms = _text_time_ms(text, now_ms)
    if ms is None or not -MAX_TIME_MS <= ms <= MAX_TIME_MS:
        raise _fail(value, "timestamp", name, TIME_HELP)
    return ms


def _seconds_to_ms(seconds: float) -> int | None:
    if not math.isfinite(seconds) or abs(seconds) * 1000 > MAX_TIME_MS:
        return None
    whole = math.trunc(seconds)
    # round the fraction on its own: 1.001 is not 1000.9999999999 ms
    return int(whole) * 1000 + round((seconds - whole) * 1000)


def _text_time_ms(text: str, now_ms: int | None) -> int | None:
    try:
        f = float(text)
    except ValueError:
        pass
    else:
        return _seconds_to_ms(f) if text.lower().lstrip("+-") not in ("inf", "infinity") else None
    m = _RFC3339_RE.match(text)
    if m:
        date, clock, frac, offset = m.groups()
        zone = "+00:00" if offset in ("Z", "z") else offset
        try:
            dt = datetime.fromisoformat(f"{date}T{clock}{zone}")
        except ValueError:
            return None
        whole_ms = (dt - _EPOCH) // timedelta(milliseconds=1)
        return whole_ms + (round(int(frac.ljust(9, "0")) / 1_000_000) if frac else 0)
    m = _RELATIVE_RE.match(text)
    if m:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        sign, offset_text = m.groups()
        if sign is None:
            return now
        offset = _units_ms(offset_text)
        if offset is None or offset > MAX_DURATION_MS:
            return None
        return now - offset if sign == "-" else now + offset
    return None
