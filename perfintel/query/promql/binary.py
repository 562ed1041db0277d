"""Binary operators: arithmetic, comparison and set operators with vector matching."""

from __future__ import annotations

import numpy as np
import promql_parser as pp

from perfintel.errors import QueryError
from perfintel.model import METRIC_NAME, LabelSet, format_series
from perfintel.query.promql.values import Scalar, Value, Vec, drop_name, merge_same_labels

ARITHMETIC = {"+", "-", "*", "/", "%", "^", "atan2"}
#: Prometheus 2.x keeps the metric name for atan2 (it is not in shouldDropMetricName).
DROPS_NAME = ARITHMETIC - {"atan2"}
COMPARISON = {"==", "!=", ">", "<", ">=", "<="}
SET_OPS = {"and", "or", "unless"}


def elementwise(op: str, lhs: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(value, keep)``: the arithmetic result, or for comparisons the left value and the test."""
    with np.errstate(all="ignore"):
        if op == "+":
            return lhs + rhs, np.ones(np.shape(lhs + rhs), bool)
        if op == "-":
            v = lhs - rhs
        elif op == "*":
            v = lhs * rhs
        elif op == "/":
            v = np.true_divide(lhs, rhs)
        elif op == "%":
            v = np.fmod(lhs, rhs)
        elif op == "^":
            v = np.power(lhs, rhs)
        elif op == "atan2":
            v = np.arctan2(lhs, rhs)
        else:
            test = {
                "==": np.equal,
                "!=": np.not_equal,
                ">": np.greater,
                "<": np.less,
                ">=": np.greater_equal,
                "<=": np.less_equal,
            }[op](lhs, rhs)
            return np.broadcast_to(lhs, test.shape).astype(np.float64), test
    return v, np.ones(v.shape, bool)


class Matching:
    """The ``on``/``ignoring`` and ``group_left``/``group_right`` of a binary expression."""

    def __init__(self, modifier: pp.BinModifier | None, op: str) -> None:
        self.card = "OneToOne"
        self.on = False
        self.names: list[str] = []
        self.include: list[str] = []
        self.return_bool = False
        if modifier is not None:
            self.card = str(modifier.card).rsplit(".", 1)[-1]
            self.return_bool = bool(modifier.return_bool)
            if modifier.matching is not None:
                self.on = str(modifier.matching.type).rsplit(".", 1)[-1] == "Include"
                self.names = list(modifier.matching.labels)
            self.include = list(modifier.group_labels or [])
        if op in SET_OPS:
            self.card = "ManyToMany"
        self._names = frozenset(self.names)

    def signature(self, labels: LabelSet) -> tuple[str, ...] | LabelSet:
        if self.on:
            d = dict(labels)
            return tuple(d.get(n, "") for n in sorted(self._names))
        return tuple(p for p in labels if p[0] not in self._names and p[0] != METRIC_NAME)


def binary(op: str, lhs: Value, rhs: Value, modifier: pp.BinModifier | None) -> Value:
    m = Matching(modifier, op)
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        v, keep = elementwise(op, lhs.values, rhs.values)
        if op in COMPARISON:
            v = keep.astype(np.float64)
        return Scalar(v)
    if isinstance(lhs, Vec) and isinstance(rhs, Scalar):
        return _vector_scalar(op, lhs, rhs.values, m, swap=False)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vec):
        return _vector_scalar(op, rhs, lhs.values, m, swap=True)
    if isinstance(lhs, Vec) and isinstance(rhs, Vec):
        if op in SET_OPS:
            return _set_op(op, lhs, rhs, m)
        return _vector_vector(op, lhs, rhs, m)
    raise QueryError(f"binary operator {op!r} is not defined between these operand types")


def _vector_scalar(op: str, vec: Vec, scalar: np.ndarray, m: Matching, swap: bool) -> Vec:
    if op in SET_OPS:
        raise QueryError(f"set operator {op!r} not allowed in binary scalar expression")
    s = scalar[None, :]
    value, keep = elementwise(op, s, vec.values) if swap else elementwise(op, vec.values, s)
    if op in COMPARISON and swap:
        value = vec.values
    present = vec.present.copy()
    if m.return_bool:
        value = keep.astype(np.float64)
    elif op in COMPARISON:
        present &= keep
    drop = op in DROPS_NAME or m.return_bool
    labels = [drop_name(ls) for ls in vec.labels] if drop else list(vec.labels)
    out = Vec(labels, np.array(value, dtype=np.float64), present).compact()
    return merge_same_labels(out) if drop else out


def _sig_presence(vec: Vec, m: Matching) -> tuple[dict[object, int], np.ndarray, np.ndarray]:
    """Signature index, signature of each row, and per-signature presence at each step."""
    index: dict[object, int] = {}
    rows = np.empty(len(vec), np.intp)
    for i, ls in enumerate(vec.labels):
        rows[i] = index.setdefault(m.signature(ls), len(index))
    pres = np.zeros((len(index), vec.present.shape[1]), bool)
    for i in range(len(vec)):
        pres[rows[i]] |= vec.present[i]
    return index, rows, pres


def _set_op(op: str, lhs: Vec, rhs: Vec, m: Matching) -> Vec:
    steps = lhs.present.shape[1]
    if op == "or":
        lidx, _lrows, lpres = _sig_presence(lhs, m)
        present = rhs.present.copy()
        for j, ls in enumerate(rhs.labels):
            k = lidx.get(m.signature(ls))
            if k is not None:
                present[j] &= ~lpres[k]
        right = Vec(list(rhs.labels), rhs.values, present)
        both = Vec(
            list(lhs.labels) + right.labels,
            np.vstack([lhs.values, right.values]) if len(lhs) + len(rhs) else np.empty((0, steps)),
            np.vstack([lhs.present, right.present])
            if len(lhs) + len(rhs)
            else np.zeros((0, steps), bool),
        )
        return merge_same_labels(both.compact())
    ridx, _rrows, rpres = _sig_presence(rhs, m)
    present = lhs.present.copy()
    for i, ls in enumerate(lhs.labels):
        k = ridx.get(m.signature(ls))
        hit = rpres[k] if k is not None else np.zeros(steps, bool)
        present[i] &= hit if op == "and" else ~hit
    return Vec(list(lhs.labels), lhs.values, present).compact()


def _result_labels(ls: LabelSet, rs: LabelSet, op: str, m: Matching) -> LabelSet:
    d = dict(ls)
    if op in DROPS_NAME or m.return_bool:
        d.pop(METRIC_NAME, None)
    if m.card == "OneToOne":
        if m.on:
            d = {k: v for k, v in d.items() if k in m._names}
        else:
            for n in m.names:
                d.pop(n, None)
    if m.include:
        rd = dict(rs)
        for n in m.include:
            if rd.get(n):
                d[n] = rd[n]
            else:
                d.pop(n, None)
    return tuple(sorted(d.items()))


def _vector_vector(op: str, lhs: Vec, rhs: Vec, m: Matching) -> Vec:
    steps = lhs.present.shape[1]
    swapped = m.card == "OneToMany"
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    # The "one" side must have at most one series per signature at every step.
    oidx: dict[object, int] = {}
    one_row = np.full((0, steps), -1, np.intp)
    rows_by_sig: list[list[int]] = []
    for j, ls in enumerate(one.labels):
        k = oidx.setdefault(m.signature(ls), len(oidx))
        if k == len(rows_by_sig):
            rows_by_sig.append([])
        rows_by_sig[k].append(j)
    one_row = np.full((len(oidx), steps), -1, np.intp)
    for k, rows in enumerate(rows_by_sig):
        for j in rows:
            clash = one.present[j] & (one_row[k] >= 0)
            if clash.any():
                other = one.labels[int(one_row[k][np.argmax(clash)])]
                side = "left" if swapped else "right"
                raise QueryError(
                    f"found duplicate series for the match group on the {side} hand-side of the operation: "
                    f"[{format_series(one.labels[j])}, {format_series(other)}];"
                    "many-to-many matching not allowed: matching labels must be unique on one side"
                )
            one_row[k] = np.where(one.present[j], j, one_row[k])
    out_labels: list[LabelSet] = []
    out_vals: list[np.ndarray] = []
    out_pres: list[np.ndarray] = []
    matched_by_sig: dict[int, np.ndarray] = {}
    cols = np.arange(steps)
    for i, ls in enumerate(many.labels):
        sig_row = oidx.get(m.signature(ls))
        if sig_row is None:
            continue
        k = sig_row
        orow = one_row[k]
        hit = many.present[i] & (orow >= 0)
        if not hit.any():
            continue
        safe = np.where(hit, orow, 0)
        ov = one.values[safe, cols]
        vl, vr = (ov, many.values[i]) if swapped else (many.values[i], ov)
        value, keep = elementwise(op, vl, vr)
        if m.return_bool:
            value = keep.astype(np.float64)
        else:
            hit = hit & keep
        if m.card == "OneToOne":
            seen = matched_by_sig.get(k)
            if seen is not None and (seen & hit).any():
                raise QueryError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                )
            matched_by_sig[k] = hit if seen is None else (seen | hit)
        for j in np.unique(orow[hit]):
            sel = hit & (orow == j)
            out_labels.append(_result_labels(ls, one.labels[int(j)], op, m))
            out_vals.append(np.asarray(value, dtype=np.float64))
            out_pres.append(sel)
    if not out_labels:
        return Vec.empty(steps)
    return merge_same_labels(Vec(out_labels, np.vstack(out_vals), np.vstack(out_pres)))


def unary_minus(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.values)
    if isinstance(value, Vec):
        out = Vec([drop_name(ls) for ls in value.labels], -value.values, value.present)
        return merge_same_labels(out, whole_range=True)
    raise QueryError("unary minus is only defined on scalars and instant vectors")
