"""The values PromQL evaluation passes around, all evaluated at every step at once.

A query is evaluated over a grid of ``S`` step timestamps (one step for an
instant query). Every intermediate result holds all steps:

* ``Vec``: an instant vector at each step, as ``values`` and ``present``
  arrays of shape ``(series, S)``; a series absent at a step has
  ``present`` false there (``values`` is then meaningless). NaN is an
  ordinary value, so presence is a separate mask.
* ``Scalar``: one float per step.
* ``Str``: a string literal.
* ``RangeInput``: the argument of a range-vector function — the raw
  samples of each series (stale markers removed) as flat arrays, plus the
  right end of the window at each step. The window at step ``j`` is
  ``[ends[j] - range_ms, ends[j]]``, closed on both sides as in Prometheus 2.x.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from perfintel.errors import QueryError, QueryLimitError, QueryTimeoutError
from perfintel.model import METRIC_NAME, LabelSet, Matcher
from perfintel.storage.base import QueryLimits, SampleReader

# Composite keys ``series_index << 44 | (timestamp + 2**43)`` let one
# ``searchsorted`` find windows of every series at every step at once.
KEY_SHIFT = np.int64(1 << 44)
KEY_BIAS = np.int64(1 << 43)


@dataclass
class Vec:
    labels: list[LabelSet]
    values: np.ndarray  # (n, S) float64
    present: np.ndarray  # (n, S) bool
    #: timestamps (ms) of the selected samples, only for a plain selector's output
    sample_ts: np.ndarray | None = None

    @classmethod
    def empty(cls, steps: int) -> Vec:
        return cls([], np.empty((0, steps)), np.zeros((0, steps), bool))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray | list[int]) -> Vec:
        idx = np.asarray(rows, dtype=np.intp)
        return Vec(
            [self.labels[i] for i in idx],
            self.values[idx],
            self.present[idx],
            None if self.sample_ts is None else self.sample_ts[idx],
        )

    def compact(self) -> Vec:
        """Drop series absent at every step."""
        keep = np.flatnonzero(self.present.any(axis=1))
        return self if len(keep) == len(self.labels) else self.take(keep)


@dataclass
class Scalar:
    values: np.ndarray  # (S,) float64


@dataclass
class Str:
    value: str


@dataclass
class RangeInput:
    labels: list[LabelSet]
    offsets: np.ndarray  # (n + 1,) int64 into ts / vals
    ts: np.ndarray  # flat int64, sorted within each series
    vals: np.ndarray  # flat float64
    ends: np.ndarray  # (S,) int64 right end of each step's window
    range_ms: int
    #: matchers of the selector (for absent_over_time); None for a subquery
    matchers: tuple[Matcher, ...] | None = None
    #: evaluation time of each step (predict_linear's intercept); defaults to ``ends``
    step_times: np.ndarray | None = None
    #: called now and then by long folds so a query's deadline is honoured
    check_deadline: Callable[[], None] | None = None
    _bounds: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def keys(self) -> np.ndarray:
        sid = np.repeat(np.arange(len(self.labels), dtype=np.int64), np.diff(self.offsets))
        return sid * KEY_SHIFT + (self.ts + KEY_BIAS)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of shape ``(n, S)``: flat indexes of each window's samples."""
        if self._bounds is None:
            n = len(self.labels)
            keys = self.keys()
            base = np.arange(n, dtype=np.int64)[:, None] * KEY_SHIFT
            lo = np.searchsorted(
                keys, base + (self.ends - self.range_ms + KEY_BIAS)[None, :], "left"
            )
            hi = np.searchsorted(keys, base + (self.ends + KEY_BIAS)[None, :], "right")
            self._bounds = (lo.reshape(n, len(self.ends)), hi.reshape(n, len(self.ends)))
        return self._bounds


Value = Vec | Scalar | Str


@dataclass
class Context:
    """Everything one evaluation needs: the step grid, the store, limits and clock."""

    store: SampleReader
    times: np.ndarray  # (S,) int64 ms
    query_start: int
    query_end: int
    lookback_ms: int
    subquery_step_ms: int
    limits: QueryLimits
    deadline: float
    use_rollups: bool = False
    step_ms: int = 0
    samples: list[int] = field(default_factory=lambda: [0])

    @property
    def steps(self) -> int:
        return len(self.times)

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeoutError("query timed out in expression evaluation")

    def count_samples(self, n: int) -> None:
        self.samples[0] += n
        cap = self.limits.max_samples
        if cap is not None and self.samples[0] > cap:
            raise QueryLimitError(
                f"query processing would load too many samples into memory (limit max_samples={cap})"
            )

    def with_times(self, times: np.ndarray, step_ms: int) -> Context:
        return Context(
            self.store,
            times,
            self.query_start,
            self.query_end,
            self.lookback_ms,
            self.subquery_step_ms,
            self.limits,
            self.deadline,
            False,
            step_ms,
            self.samples,
        )


def drop_name(labels: LabelSet) -> LabelSet:
    if labels and labels[0][0] == METRIC_NAME:
        return labels[1:]
    return tuple(p for p in labels if p[0] != METRIC_NAME)


def with_label(labels: LabelSet, name: str, value: str) -> LabelSet:
    rest = [p for p in labels if p[0] != name]
    if value:
        rest.append((name, value))
    return tuple(sorted(rest))


def merge_same_labels(vec: Vec, *, whole_range: bool = False) -> Vec:
    """Merge series that ended up with the same labels (e.g. after dropping names).

    Prometheus builds range results by labels, so two inputs that become equal
    form one output series. Being present at the same step is an error; with
    ``whole_range`` (range-vector functions) any repeat is an error, as in
    Prometheus's matrix check.
    """
    if len(set(vec.labels)) == len(vec.labels):
        return vec
    if whole_range:
        raise QueryError("vector cannot contain metrics with the same labelset")
    order: dict[LabelSet, list[int]] = {}
    for i, ls in enumerate(vec.labels):
        order.setdefault(ls, []).append(i)
    labels = list(order)
    values = np.empty((len(labels), vec.values.shape[1]))
    present = np.zeros((len(labels), vec.values.shape[1]), bool)
    for j, rows in enumerate(order.values()):
        if len(rows) > 1 and (vec.present[rows].sum(axis=0) > 1).any():
            raise QueryError("vector cannot contain metrics with the same labelset")
        for i in rows:
            m = vec.present[i]
            values[j, m] = vec.values[i, m]
            present[j] |= m
    return Vec(labels, values, present)
