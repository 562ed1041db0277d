"""Aggregation operators (sum, avg, topk, quantile, count_values, ...) at every step.

Groups fold their members in input order with the same arithmetic as
Prometheus 2.x's ``aggregation()`` (an incremental mean for ``avg``,
Welford's update for ``stddev``), vectorised over the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from perfintel.errors import QueryError
from perfintel.model import LABEL_NAME_RE, METRIC_NAME, LabelSet
from perfintel.query.promql.format import format_float_f
from perfintel.query.promql.values import Vec


def grouping_key(labels: LabelSet, names: frozenset[str], without: bool) -> LabelSet:
    if without:
        return tuple(p for p in labels if p[0] not in names and p[0] != METRIC_NAME)
    return tuple(p for p in labels if p[0] in names)


def _groups(vec: Vec, names: list[str], without: bool | None) -> tuple[list[LabelSet], np.ndarray]:
    """Group labels and the group index of each row; ``without is None`` is one global group."""
    if without is None:
        return [()], np.zeros(len(vec), np.intp)
    want = frozenset(names)
    index: dict[LabelSet, int] = {}
    gidx = np.empty(len(vec), np.intp)
    for i, ls in enumerate(vec.labels):
        gidx[i] = index.setdefault(grouping_key(ls, want, without), len(index))
    return list(index), gidx


def aggregate(
    op: str,
    vec: Vec,
    names: list[str],
    without: bool | None,
    param: np.ndarray | str | None,
    check_deadline: Callable[[], None] | None = None,
) -> Vec:
    if op in ("topk", "bottomk"):
        if not isinstance(param, np.ndarray):
            raise QueryError(f"expected a scalar parameter for {op}")
        return _top(vec, names, without, param, op == "topk")
    if op == "count_values":
        if not isinstance(param, str):
            raise QueryError("expected a string parameter for count_values")
        return _count_values(vec, names, without, param)
    labels, gidx = _groups(vec, names, without)
    ng = len(labels)
    if op == "quantile":
        if not isinstance(param, np.ndarray):
            raise QueryError("expected a scalar parameter for quantile")
        return _quantile(vec, labels, gidx, param)
    if op not in _FOLDS:
        raise QueryError(f"unsupported aggregation {op!r}")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        out, count = _FOLDS[op](vec, gidx, ng, check_deadline)
    return Vec(labels, out, count > 0).compact()


# Each fold replays Prometheus's per-group sequence of updates, in input order, for
# every group and step at once. Returns ``(values, count)``.
_Fold = Callable[[Vec, np.ndarray, int, Callable[[], None] | None], tuple[np.ndarray, np.ndarray]]


def _cells(vec: Vec, gidx: np.ndarray) -> np.ndarray:
    """Flat ``(group, step)`` cell of every ``(row, step)`` value, row-major."""
    steps = vec.values.shape[1]
    return (gidx[:, None] * steps + np.arange(steps)).ravel()


def _count(vec: Vec, gidx: np.ndarray, ng: int) -> np.ndarray:
    """Present members per group and step (integer sums: any order is exact)."""
    steps = vec.values.shape[1]
    if len(vec) == 0:
        return np.zeros((ng, steps))
    order = np.argsort(gidx, kind="stable")
    grouped = gidx[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    count = np.zeros((ng, steps))
    count[grouped[starts]] = np.add.reduceat(vec.present[order], starts, axis=0, dtype=np.int64)
    return count


def _sum(
    vec: Vec, gidx: np.ndarray, ng: int, _check: Callable[[], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``bincount`` adds its weights one after another in input order, as Prometheus
    adds a group's members. It starts from 0.0 where Prometheus starts from the
    first value: the same sums (x + 0.0 == x for every x but -0.0, and no sum of
    other values is -0.0), except for cells holding only -0.0, fixed up after."""
    steps = vec.values.shape[1]
    cells = _cells(vec, gidx)
    present = vec.present.ravel()
    values = vec.values.ravel()
    acc = np.bincount(cells, np.where(present, values, 0.0), ng * steps).reshape(ng, steps)
    count = _count(vec, gidx, ng)
    zero = values == 0
    if zero.any():
        neg_zero = present & zero & np.signbit(values)
        only = np.bincount(cells[neg_zero], minlength=ng * steps).reshape(ng, steps) == count
        acc[only & (count > 0)] = -0.0
    return acc, count


def _extreme(smallest: bool) -> _Fold:
    def fold(
        vec: Vec, gidx: np.ndarray, ng: int, check: Callable[[], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        # Prometheus's rule: replace while the new value is smaller (larger) or the
        # current one is NaN; a tie of -0.0 and 0.0 keeps the earlier one.
        steps = vec.values.shape[1]
        count = np.zeros((ng, steps))
        acc = np.zeros((ng, steps))
        for g, m, v in _members_by_rank(vec, gidx, ng, check):
            cur = acc[g]
            better = (cur > v) if smallest else (cur < v)
            take = m & ((count[g] == 0) | better | np.isnan(cur))
            acc[g] = np.where(take, v, cur)
            count[g] += m
        return acc, count

    return fold


def _count_fold(
    vec: Vec, gidx: np.ndarray, ng: int, _check: Callable[[], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    count = _count(vec, gidx, ng)
    return count, count


def _group_fold(
    vec: Vec, gidx: np.ndarray, ng: int, _check: Callable[[], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    count = _count(vec, gidx, ng)
    return np.ones_like(count), count


def _members_by_rank(
    vec: Vec, gidx: np.ndarray, ng: int, check: Callable[[], None] | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(groups, present, values)`` of the k-th member (input order) of every group
    that has one, for k = 0, 1, ...: each group at most once per pass, so a fold's
    updates vectorise. ``check`` (the query's deadline) runs every 256 passes."""
    order = np.argsort(gidx, kind="stable")
    sizes = np.bincount(gidx, minlength=ng)
    starts = np.cumsum(sizes) - sizes
    for k in range(int(sizes.max(initial=0))):
        if check is not None and k % 256 == 255:
            check()
        groups = np.flatnonzero(sizes > k)
        rows = order[starts[groups] + k]
        yield groups, vec.present[rows], vec.values[rows]


def _avg(
    vec: Vec, gidx: np.ndarray, ng: int, check: Callable[[], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus 2.x's incremental mean, skipping updates once the mean is infinite."""
    steps = vec.values.shape[1]
    count = np.zeros((ng, steps))
    mean = np.zeros((ng, steps))
    for g, m, v in _members_by_rank(vec, gidx, ng, check):
        c = count[g] + m
        first = m & (count[g] == 0)
        cur = mean[g]
        skip = np.isinf(cur) & (
            (np.isinf(v) & ((cur > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v))
        )
        upd = m & ~first & ~skip
        mean[g] = np.where(first, v, np.where(upd, cur + (v / c - cur / c), cur))
        count[g] = c
    return mean, count


def _variance(sqrt: bool) -> _Fold:
    def fold(
        vec: Vec, gidx: np.ndarray, ng: int, check: Callable[[], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Welford's update, as Prometheus 2.x's stddev/stdvar."""
        steps = vec.values.shape[1]
        count = np.zeros((ng, steps))
        mean = np.zeros((ng, steps))
        acc = np.zeros((ng, steps))
        for g, m, v in _members_by_rank(vec, gidx, ng, check):
            c = count[g] + m
            first = m & (count[g] == 0)
            cur = mean[g]
            delta = v - cur
            new_mean = cur + delta / c
            upd = m & ~first
            acc[g] = np.where(upd, acc[g] + delta * (v - new_mean), acc[g])
            mean[g] = np.where(first, v, np.where(upd, new_mean, cur))
            count[g] = c
        out = acc / count
        return (np.sqrt(out) if sqrt else out), count

    return fold


_FOLDS: dict[str, _Fold] = {
    "sum": _sum,
    "avg": _avg,
    "min": _extreme(True),
    "max": _extreme(False),
    "count": _count_fold,
    "group": _group_fold,
    "stddev": _variance(True),
    "stdvar": _variance(False),
}


def _top(vec: Vec, names: list[str], without: bool | None, k: np.ndarray, largest: bool) -> Vec:
    _labels, gidx = _groups(vec, names, without)
    present = np.zeros_like(vec.present)
    kk = np.where(np.isnan(k), 0, np.clip(k, -1, 2**62)).astype(np.int64)
    for g in np.unique(gidx):
        rows = np.flatnonzero(gidx == g)
        vals = vec.values[rows]
        pres = vec.present[rows]
        # NaN ranks last for both topk and bottomk; absent ranks after everything.
        key = np.where(np.isnan(vals), np.inf, -vals if largest else vals)
        key = np.where(pres, key, np.nan)
        order = np.argsort(key, axis=0, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[:, None], axis=0)
        present[rows] = pres & (rank < kk[None, :])
    return Vec(list(vec.labels), vec.values.copy(), present).compact()


def _quantile(vec: Vec, labels: list[LabelSet], gidx: np.ndarray, q: np.ndarray) -> Vec:
    steps = vec.values.shape[1]
    out = np.full((len(labels), steps), np.nan)
    present = np.zeros((len(labels), steps), bool)
    for g in range(len(labels)):
        rows = np.flatnonzero(gidx == g)
        vals = np.where(vec.present[rows], vec.values[rows], np.inf)
        n = vec.present[rows].sum(axis=0)
        srt = np.sort(vals, axis=0)
        has = n > 0
        nf = n.astype(np.float64)
        with np.errstate(invalid="ignore"):
            rank = q * (nf - 1)
            lower = np.maximum(0, np.floor(rank))
            upper = np.minimum(nf - 1, lower + 1)
            weight = rank - np.floor(rank)
            li = np.clip(np.nan_to_num(lower), 0, max(len(rows) - 1, 0)).astype(np.intp)
            ui = np.clip(np.nan_to_num(upper), 0, max(len(rows) - 1, 0)).astype(np.intp)
            cols = np.arange(steps)
            res = srt[li, cols] * (1 - weight) + srt[ui, cols] * weight
        res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
        out[g] = res
        present[g] = has
    return Vec(labels, out, present).compact()


def _count_values(vec: Vec, names: list[str], without: bool | None, label: str) -> Vec:
    if not LABEL_NAME_RE.match(label):
        raise QueryError(f"invalid label name {label!r}")
    steps = vec.values.shape[1]
    want = frozenset(names)
    counts: dict[LabelSet, np.ndarray] = {}
    for i, ls in enumerate(vec.labels):
        base = () if without is None else grouping_key(ls, want, without)
        base = tuple(p for p in base if p[0] != label)
        for j in np.flatnonzero(vec.present[i]):
            key = tuple(sorted((*base, (label, format_float_f(float(vec.values[i, j]))))))
            arr = counts.get(key)
            if arr is None:
                arr = counts[key] = np.zeros(steps)
            arr[j] += 1
    labels = list(counts)
    if not labels:
        return Vec.empty(steps)
    values = np.vstack([counts[ls] for ls in labels])
    return Vec(labels, values, values > 0)
