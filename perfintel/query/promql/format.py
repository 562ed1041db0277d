"""Number formatting exactly as Prometheus writes it on the wire."""

from __future__ import annotations

from decimal import Decimal

import numpy as np


def format_float_f(f: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'f', -1, 64)``: shortest digits, never exponent form.

    Prometheus uses it for label values (``count_values``).

    >>> [format_float_f(x) for x in (1.0, 0.1, 1e21, 1.5e-7, float("nan"), float("-inf"))]
    ['1', '0.1', '1000000000000000000000', '0.00000015', 'NaN', '-Inf']
    """
    r = repr(float(f))
    if r[-2:] == ".0":
        return r[:-2]
    if r[-1] in "nf":  # nan, inf, -inf
        return "NaN" if r == "nan" else ("+Inf" if r == "inf" else "-Inf")
    if "e" in r:
        r = format(Decimal(r), "f")
        return r[:-2] if r.endswith(".0") else r
    return r


def format_value(f: float) -> str:
    """A sample value as Prometheus's JSON API writes it (``marshalValue``).

    Shortest digits in ``'f'`` form, switching to ``'e'`` form (``1e-07``,
    ``1.5e+21``) when ``|f| < 1e-6`` or ``|f| >= 1e21``, as jsoniter does.

    >>> [format_value(x) for x in (1.0, 0.1, 1e16, 1.5e-5, 1.5e-7, 1e21, -0.0, float("inf"))]
    ['1', '0.1', '10000000000000000', '0.000015', '1.5e-07', '1e+21', '-0', '+Inf']
    """
    f = float(f)
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21) and a != float("inf"):
        return repr(f)  # Python's repr already uses Go's 'e' layout at these magnitudes
    return format_float_f(f)


def format_values(values: np.ndarray) -> list[str]:
    """``format_value`` over an array (the common cases without a call per value)."""
    reprs = map(repr, values.tolist())
    magnitude = np.abs(values)
    if (
        len(values)
        and np.isfinite(magnitude).all()
        and magnitude.max() < 1e16
        and magnitude.min(where=magnitude != 0, initial=1.0) >= 1e-4
        and not np.signbit(values[values == 0]).any()
    ):
        # Where Python's repr is Go's 'f' form but for a trailing ".0" (no
        # exponent, no -0, no NaN/Inf): strip that, and nothing else to check.
        return [r[:-2] if r[-2:] == ".0" else r for r in reprs]
    out = list(reprs)
    for i, r in enumerate(out):
        if r[-2:] == ".0":
            out[i] = r[:-2]
        elif "e" in r or r[-1] in "nf":
            out[i] = format_value(float(r))
    return out


def format_points(timestamps: np.ndarray, values: np.ndarray) -> str:
    """A matrix series' points as Prometheus's JSON API writes them:
    ``[1435781430.781,"1"],[...]`` (no enclosing brackets).

    >>> format_points(np.array([1000, 2500]), np.array([1.0, 0.25]))
    '[1,"1"],[2.500,"0.25"]'
    """
    stamps: list[int] | list[str]
    if len(timestamps) and timestamps.min() >= 0 and not (timestamps % 1000).any():
        stamps = (timestamps // 1000).tolist()  # whole seconds, the usual step
    else:
        stamps = list(map(format_timestamp, timestamps.tolist()))
    return ",".join(map('[{},"{}"]'.format, stamps, format_values(values)))


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
