"""Functions over instant vectors and scalars (math, labels, time, histograms, absent)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import re2

from perfintel.errors import QueryError
from perfintel.model import LABEL_NAME_RE, METRIC_NAME, LabelSet, Matcher, MatchOp
from perfintel.query.promql.values import (
    RangeInput,
    Scalar,
    Str,
    Value,
    Vec,
    drop_name,
    merge_same_labels,
    with_label,
)

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "sgn": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def _vec(v: Value, fn: str) -> Vec:
    if not isinstance(v, Vec):
        raise QueryError(f"expected an instant vector argument to {fn}")
    return v


def _scalar(v: Value, fn: str) -> np.ndarray:
    if not isinstance(v, Scalar):
        raise QueryError(f"expected a scalar argument to {fn}")
    return v.values


def _str(v: Value, fn: str) -> str:
    if not isinstance(v, Str):
        raise QueryError(f"expected a string argument to {fn}")
    return v.value


def _mapped(vec: Vec, values: np.ndarray, present: np.ndarray | None = None) -> Vec:
    out = Vec(
        [drop_name(ls) for ls in vec.labels], values, vec.present if present is None else present
    )
    return merge_same_labels(out.compact())


def math_function(name: str, arg: Value) -> Vec:
    vec = _vec(arg, name)
    with np.errstate(all="ignore"):
        return _mapped(vec, _MATH[name](vec.values))


def round_(args: list[Value]) -> Vec:
    vec = _vec(args[0], "round")
    to = _scalar(args[1], "round") if len(args) > 1 else np.ones(vec.values.shape[1])
    with np.errstate(all="ignore"):
        inv = 1.0 / to
        return _mapped(vec, np.floor(vec.values * inv[None, :] + 0.5) / inv[None, :])


def clamp(name: str, args: list[Value]) -> Vec:
    vec = _vec(args[0], name)
    v = vec.values
    present = vec.present
    if name == "clamp":
        lo, hi = _scalar(args[1], name)[None, :], _scalar(args[2], name)[None, :]
        present = present & ~(hi < lo)
        out = np.maximum(lo, np.minimum(hi, v))
    elif name == "clamp_min":
        out = np.maximum(_scalar(args[1], name)[None, :], v)
    else:
        out = np.minimum(_scalar(args[1], name)[None, :], v)
    return _mapped(vec, out, present)


def timestamp(vec: Vec, times: np.ndarray) -> Vec:
    ts = vec.sample_ts if vec.sample_ts is not None else np.broadcast_to(times, vec.values.shape)
    return _mapped(vec, ts / 1000.0)


def date_function(name: str, args: list[Value], times: np.ndarray) -> Vec:
    if args:
        vec = _vec(args[0], name)
    else:
        vec = Vec([()], (times / 1000.0)[None, :], np.ones((1, len(times)), bool))
    secs = vec.values
    ok = np.isfinite(secs)
    dt = np.where(ok, secs, 0).astype("int64").astype("datetime64[s]")
    days = dt.astype("datetime64[D]")
    months = dt.astype("datetime64[M]")
    years = dt.astype("datetime64[Y]")
    if name == "day_of_week":
        out = (days.astype(np.int64) + 4) % 7
    elif name == "day_of_month":
        out = (days - months).astype(np.int64) + 1
    elif name == "day_of_year":
        out = (days - years).astype(np.int64) + 1
    elif name == "days_in_month":
        out = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(
            np.int64
        )
    elif name == "hour":
        out = (dt - days).astype(np.int64) // 3600
    elif name == "minute":
        out = ((dt - days).astype(np.int64) // 60) % 60
    elif name == "month":
        out = (months - years).astype(np.int64) + 1
    elif name == "year":
        out = years.astype(np.int64) + 1970
    else:
        raise QueryError(f"unknown function {name}")
    return _mapped(vec, np.where(ok, out.astype(np.float64), np.nan))


def _expand(template: str, m: re2._Match, groupindex: dict[str, int]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 >= len(template):
            out.append(c)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = template.find("}", i + 2)
            name = template[i + 2 : end] if end > 0 else ""
            if end < 0 or not name or not all(ch.isalnum() or ch == "_" for ch in name):
                out.append(c)
                i += 1
                continue
            i = end + 1
        else:
            j = i + 1
            while j < len(template) and (template[j].isalnum() or template[j] == "_"):
                j += 1
            name = template[i + 1 : j]
            if not name:
                out.append(c)
                i += 1
                continue
            i = j
        idx = int(name) if name.isdigit() else groupindex.get(name, -1)
        if idx >= 0:
            with contextlib.suppress(IndexError, re2.error):
                out.append(m.group(idx) or "")
    return "".join(out)


def label_replace(args: list[Value]) -> Vec:
    vec = _vec(args[0], "label_replace")
    dst, repl, src, regex = (_str(a, "label_replace") for a in args[1:5])
    try:
        rx = re2.compile(f"^(?:{regex})$")
    except re2.error as exc:
        raise QueryError(f'invalid regular expression in label_replace(): "{regex}"') from exc
    if not LABEL_NAME_RE.match(dst):
        raise QueryError(f'invalid destination label name in label_replace(): "{dst}"')
    groupindex = dict(rx.groupindex)
    labels = []
    for ls in vec.labels:
        m = rx.match(dict(ls).get(src, ""))
        labels.append(ls if m is None else with_label(ls, dst, _expand(repl, m, groupindex)))
    return merge_same_labels(Vec(labels, vec.values, vec.present))


def label_join(args: list[Value]) -> Vec:
    vec = _vec(args[0], "label_join")
    dst, sep = _str(args[1], "label_join"), _str(args[2], "label_join")
    srcs = [_str(a, "label_join") for a in args[3:]]
    if not LABEL_NAME_RE.match(dst):
        raise QueryError(f'invalid destination label name in label_join(): "{dst}"')
    labels = []
    for ls in vec.labels:
        d = dict(ls)
        labels.append(with_label(ls, dst, sep.join(d.get(s, "") for s in srcs)))
    return merge_same_labels(Vec(labels, vec.values, vec.present))


def vector(arg: Value) -> Vec:
    s = _scalar(arg, "vector")
    return Vec([()], s[None, :].copy(), np.ones((1, len(s)), bool))


def scalar(arg: Value) -> Scalar:
    vec = _vec(arg, "scalar")
    n = vec.present.sum(axis=0)
    if not len(vec):
        return Scalar(np.full(n.shape, np.nan))
    idx = np.argmax(vec.present, axis=0)  # the single present series, where there is one
    vals = vec.values[idx, np.arange(len(n))]
    return Scalar(np.where(n == 1, vals, np.nan))


def absent_labels(matchers: tuple[Matcher, ...] | None) -> LabelSet:
    if not matchers:
        return ()
    seen: dict[str, str] = {}
    dup: set[str] = set()
    for m in matchers:
        if m.op is MatchOp.EQ and m.name != METRIC_NAME:
            if m.name in seen:
                dup.add(m.name)
            seen[m.name] = m.value
    return tuple(sorted((k, v) for k, v in seen.items() if k not in dup and v))


def absent(vec: Vec, matchers: tuple[Matcher, ...] | None, steps: int) -> Vec:
    missing = ~vec.present.any(axis=0) if len(vec) else np.ones(steps, bool)
    return Vec(
        [absent_labels(matchers)], np.ones((1, steps)), np.reshape(missing, (1, steps))
    ).compact()


def absent_over_time(ri: RangeInput) -> Vec:
    lo, hi = ri.bounds()
    steps = len(ri.ends)
    missing = ~((hi - lo) > 0).any(axis=0) if len(ri.labels) else np.ones(steps, bool)
    return Vec([absent_labels(ri.matchers)], np.ones((1, steps)), missing[None, :]).compact()


def histogram_quantile(q: np.ndarray, vec: Vec) -> Vec:
    """Quantiles from classic ``le`` buckets, as Prometheus's bucketQuantile (2.x)."""
    groups: dict[LabelSet, list[tuple[float, int]]] = {}
    for i, ls in enumerate(vec.labels):
        le = dict(ls).get("le")
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        key = tuple(p for p in ls if p[0] not in ("le", METRIC_NAME))
        groups.setdefault(key, []).append((bound, i))
    steps = vec.values.shape[1]
    labels = list(groups)
    out = np.full((len(labels), steps), np.nan)
    present = np.zeros((len(labels), steps), bool)
    for g, key in enumerate(labels):
        members = sorted(groups[key])
        bounds = np.array([b for b, _ in members])
        rows = np.array([i for _, i in members])
        pres = vec.present[rows]
        counts = vec.values[rows]
        for j in np.flatnonzero(pres.any(axis=0)):
            m = pres[:, j]
            out[g, j] = _bucket_quantile(float(q[j]), bounds[m], counts[m, j])
            present[g, j] = True
    return merge_same_labels(Vec(labels, out, present))


def _bucket_quantile(q: float, bounds: np.ndarray, counts: np.ndarray) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(bounds) == 0 or not (math.isinf(bounds[-1]) and bounds[-1] > 0):
        return math.nan
    # Coalesce buckets with the same bound, then force monotonic counts.
    ub: list[float] = []
    cnt: list[float] = []
    for b, c in zip(bounds.tolist(), counts.tolist(), strict=True):
        if ub and ub[-1] == b:
            cnt[-1] += c
        else:
            ub.append(b)
            cnt.append(c)
    top = -math.inf
    for i, c in enumerate(cnt):
        if c > top:
            top = c
        elif c < top:
            cnt[i] = top
    if len(ub) < 2:
        return math.nan
    observations = cnt[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = len(ub) - 1
    for i in range(len(ub) - 1):
        if cnt[i] >= rank:
            b = i
            break
    if b == len(ub) - 1:
        return ub[-2]
    if b == 0 and ub[0] <= 0:
        return ub[0]
    start = 0.0
    end = ub[b]
    count = cnt[b]
    if b > 0:
        start = ub[b - 1]
        count -= cnt[b - 1]
        rank -= cnt[b - 1]
    return start + (end - start) * (rank / count)


def sort_rows(vec: Vec, descending: bool) -> Vec:
    """Order series by their value at the last step (what an instant query shows)."""
    if not len(vec):
        return vec
    last = vec.values[:, -1]
    key = np.where(np.isnan(last), -np.inf if not descending else np.inf, last)
    order = np.argsort(-key if descending else key, kind="stable")
    return vec.take(order)
