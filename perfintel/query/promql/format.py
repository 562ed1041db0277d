"""Number formatting exactly as Prometheus writes it on the wire."""

from __future__ import annotations

from decimal import Decimal


def format_value(f: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'f', -1, 64)``: shortest digits, never exponent form.

    >>> [format_value(x) for x in (1.0, 0.1, 1e21, 1.5e-7, float("nan"), float("-inf"))]
    ['1', '0.1', '1000000000000000000000', '0.00000015', 'NaN', '-Inf']
    """
    r = repr(f)
    if r[-2:] == ".0":
        return r[:-2]
    if "e" in r:
        r = format(Decimal(r), "f")
        return r[:-2] if r.endswith(".0") else r
    if r[-1] in "nf":  # nan, inf, -inf
        return "NaN" if r == "nan" else ("+Inf" if r == "inf" else "-Inf")
    return r


def format_timestamp(ms: int) -> str:
    """Milliseconds as float seconds, the way Prometheus's JSON API writes them.

    >>> format_timestamp(1435781430781), format_timestamp(1000), format_timestamp(-1500)
    ('1435781430.781', '1', '-1.500')
    """
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    sec, frac = divmod(ms, 1000)
    if frac == 0:
        return f"{sign}{sec}"
    return f"{sign}{sec}.{frac:03d}"
