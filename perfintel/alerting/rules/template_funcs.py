"""Values and functions of rule templates, as Go and Prometheus print and define them.

``go_float``/``go_string`` print values as Go's ``fmt.Sprint`` does; ``FUNCS``
are the functions a template may call (Go's built-ins and Prometheus's
``humanize*`` family), each checked against Prometheus's definitions.
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import re2

from perfintel.errors import BadInputError
from perfintel.timeparse import parse_duration_seconds


class TemplateError(BadInputError):
    """A template that does not parse or fails while running."""


# --- values as Go prints them --------------------------------------------------------------


def go_float(v: float) -> str:
    """Go's ``%v`` of a float64 (``strconv.FormatFloat(v, 'g', -1, 64)``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    sign, digits, exponent = Decimal(repr(float(v))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    dp = len(digits) + int(exponent)  # position of the decimal point
    exp = dp - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go: shortest precision decides at 6
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return f"{neg}{ds}{'0' * (dp - len(ds))}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def go_g(v: float, precision: int) -> str:
    """Go's ``%.<precision>g`` (Python's ``%g`` agrees except for NaN and infinities)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"%.{precision}g" % v


def go_string(value: object) -> str:
    """What Go's ``fmt.Sprint`` prints for a template value."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = " ".join(f"{go_string(k)}:{go_string(value[k])}" for k in sorted(value, key=str))
        return f"map[{inner}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def truth(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value) > 0
    return True


# --- functions ----------------------------------------------------------------------------


def _float(v: object) -> float:
    if isinstance(v, bool):
        raise TemplateError(f"can't convert {v} to float")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise TemplateError(f"can't convert {v!r} to float") from None
    raise TemplateError(f"can't convert {go_string(v)} to float")


def _scaled(v: float, steps: Sequence[str], base: float, up: bool) -> tuple[float, str]:
    prefix = ""
    for p in steps:
        if up and abs(v) < base:
            break
        if not up and abs(v) >= 1:
            break
        prefix = p
        v = v / base if up else v * base
    return v, prefix


def humanize(x: object) -> str:
    v = _float(x)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return go_g(v, 4)
    if abs(v) >= 1:
        v, p = _scaled(v, ("k", "M", "G", "T", "P", "E", "Z", "Y"), 1000, True)
    else:
        v, p = _scaled(v, ("m", "u", "n", "p", "f", "a", "z", "y"), 1000, False)
    return go_g(v, 4) + p


def humanize1024(x: object) -> str:
    v = _float(x)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return go_g(v, 4)
    v, p = _scaled(v, ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"), 1024, True)
    return go_g(v, 4) + p


def humanize_duration(x: object) -> str:
    v = _float(x)
    if math.isnan(v) or math.isinf(v):
        return go_g(v, 4)
    if v == 0:
        return go_g(v, 4) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g(v, 4)}s"
    v, p = _scaled(v, ("m", "u", "n", "p", "f", "a", "z", "y"), 1000, False)
    return f"{go_g(v, 4)}{p}s"


def humanize_percentage(x: object) -> str:
    return go_g(_float(x) * 100, 4) + "%"


def humanize_timestamp(x: object) -> str:
    v = _float(x)
    if math.isnan(v) or math.isinf(v):
        return go_g(v, 4)
    t = _dt.datetime.fromtimestamp(0, _dt.UTC) + _dt.timedelta(seconds=v)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def _to_time(x: object) -> str:
    return humanize_timestamp(x)


def _title(s: str) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), str(s))


def _re_replace_all(pattern: str, repl: str, text: str) -> str:
    try:
        rx = re2.compile(pattern)
    except re2.error as exc:
        raise TemplateError(f"invalid regular expression {pattern!r}: {exc}") from None
    # Go's ${1} / $1 expansion -> Python's \g<1>
    py_repl = re.sub(r"\$\{?(\w+)\}?", lambda m: f"\\g<{m.group(1)}>", repl.replace("\\", "\\\\"))
    try:
        return rx.sub(py_repl, text)
    except (re2.error, IndexError, KeyError):
        return rx.sub(lambda _m: repl, text)


def _match(pattern: str, text: str) -> bool:
    try:
        return re2.search(pattern, str(text)) is not None
    except re2.error as exc:
        raise TemplateError(f"invalid regular expression {pattern!r}: {exc}") from None


def _strip_port(host: str) -> str:
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _strip_domain(host: str) -> str:
    port = ""
    if host.count(":") == 1 and not host.startswith("["):
        host, port = host.split(":", 1)
        port = ":" + port
    if re.fullmatch(r"[0-9.]+", host):
        return host + port
    return host.split(".", 1)[0] + port


def _parse_duration(text: str) -> float:
    try:
        return parse_duration_seconds(text)
    except ValueError as exc:
        raise TemplateError(str(exc)) from None


def _compare(name: str, a: object, b: object) -> int:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    raise TemplateError(f"{name}: incompatible types for comparison")


def _eq(a: object, *others: object) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    for b in others:
        if isinstance(a, bool) or isinstance(b, bool):
            if a is b:
                return True
            continue
        if a == b:
            return True
    return False


def _index(item: object, *keys: object) -> object:
    for k in keys:
        if isinstance(item, Mapping):
            item = item.get(k, "")
        elif isinstance(item, list | tuple | str) and isinstance(k, int):
            if not 0 <= k < len(item):
                raise TemplateError(f"index out of range: {k}")
            item = item[k]
        else:
            raise TemplateError(f"can't index item of type {type(item).__name__}")
    return item


def _len(item: object) -> int:
    if isinstance(item, str | Mapping | list | tuple):
        return len(item)
    raise TemplateError(f"len of type {type(item).__name__}")


def _and(*args: object) -> object:
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _or(*args: object) -> object:
    for a in args:
        if truth(a):
            return a
    return args[-1]


def _sprint(*args: object) -> str:
    # Go's Sprint adds spaces between operands when neither is a string.
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_string(a))
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")


def printf(fmt: str, *args: object) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: ``%s %v %d %f %e %g %x %X %q %t %%``."""
    out: list[str] = []
    pos = 0
    arg_i = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if arg_i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[arg_i]
        arg_i += 1
        out.append(_format_one(flags, width, prec, verb, a))
    out.append(fmt[pos:])
    if arg_i < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_string(a)}" for a in args[arg_i:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _go_type(a: object) -> str:
    if isinstance(a, bool):
        return "bool"
    if isinstance(a, int):
        return "int"
    if isinstance(a, float):
        return "float64"
    if isinstance(a, str):
        return "string"
    return "map[string]string" if isinstance(a, Mapping) else type(a).__name__


def _format_one(flags: str, width: str | None, prec: str | None, verb: str, a: object) -> str:
    spec = flags.replace("#", "") + (width or "") + ("." + prec if prec is not None else "")
    if verb in "sv":
        s = go_string(a)
        if prec is not None and verb == "s":
            s = s[: int(prec)]
        return _pad(s, flags, width)
    if verb == "q":
        return _pad(
            '"' + go_string(a).replace("\\", "\\\\").replace('"', '\\"') + '"', flags, width
        )
    if verb == "t":
        if isinstance(a, bool):
            return _pad("true" if a else "false", flags, width)
        return f"%!t({_go_type(a)}={go_string(a)})"
    if verb in "dxXob":
        if isinstance(a, int) and not isinstance(a, bool):
            return f"%{spec}{verb}" % a if verb != "b" else _pad(format(a, "b"), flags, width)
        if isinstance(a, str) and verb in "xX":
            h = a.encode().hex()
            return _pad(h.upper() if verb == "X" else h, flags, width)
        return f"%!{verb}({_go_type(a)}={go_string(a)})"
    if verb in "feEgG":
        if isinstance(a, int | float) and not isinstance(a, bool):
            v = float(a)
            if math.isnan(v) or math.isinf(v):
                return _pad(go_float(v), flags, width)
            if verb in "gG" and prec is None:
                return _pad(go_float(v), flags, width)
            return f"%{spec}{verb}" % v
        return f"%!{verb}({_go_type(a)}={go_string(a)})"
    return f"%!{verb}({_go_type(a)}={go_string(a)})"


def _pad(s: str, flags: str, width: str | None) -> str:
    if not width or width == "*":
        return s
    w = int(width)
    return s.ljust(w) if "-" in flags else s.rjust(w)


FUNCS: dict[str, Callable[..., object]] = {
    "and": _and,
    "or": _or,
    "not": lambda a: not truth(a),
    "len": _len,
    "index": _index,
    "print": _sprint,
    "println": lambda *a: " ".join(go_string(x) for x in a) + "\n",
    "printf": printf,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": lambda a, b: _compare("lt", a, b) < 0,
    "le": lambda a, b: _compare("le", a, b) <= 0,
    "gt": lambda a, b: _compare("gt", a, b) > 0,
    "ge": lambda a, b: _compare("ge", a, b) >= 0,
    "html": lambda *a: _html.escape(_sprint(*a), quote=True).replace("&#x27;", "&#39;"),
    "js": lambda *a: (
        _sprint(*a)
        .replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace('"', '\\"')
        .replace("<", "\\u003C")
        .replace(">", "\\u003E")
    ),
    "urlquery": lambda *a: urllib.parse.quote_plus(_sprint(*a)),
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "humanizeTimestamp": humanize_timestamp,
    "toTime": _to_time,
    "toUpper": lambda s: str(s).upper(),
    "toLower": lambda s: str(s).lower(),
    "title": _title,
    "reReplaceAll": _re_replace_all,
    "match": _match,
    "stripPort": _strip_port,
    "stripDomain": _strip_domain,
    "parseDuration": _parse_duration,
    "safeHtml": lambda s: str(s),
}
