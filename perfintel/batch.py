"""Columnar batches of samples: what every parser yields and every store appends.

A ``SampleBatch`` holds the distinct series of the batch once and the samples
as three parallel numpy arrays, so parsers, the write-ahead log and the store
move arrays around instead of millions of Python tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from perfintel.model import LabelSet, label_set


@dataclass(frozen=True)
class LineError:
    """A rejected line or sample: 1-based ``line`` (0 when the format has no lines) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


@dataclass
class SampleBatch:
    """Samples of many series.

    ``series[series_idx[i]]`` is the label set of sample ``i``, taken at
    ``timestamps[i]`` (int64 milliseconds) with ``values[i]`` (float64).
    """

    series: list[LabelSet]
    series_idx: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        if not (len(self.series_idx) == n == len(self.values)):
            raise ValueError("series_idx, timestamps and values must have the same length")

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls([], np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def from_arrays(
        cls, labels: Mapping[str, str] | LabelSet, timestamps: np.ndarray, values: np.ndarray
    ) -> SampleBatch:
        """One series' samples (the in-process bulk path)."""
        ts = np.ascontiguousarray(timestamps, dtype=np.int64)
        return cls(
            [label_set(labels) if isinstance(labels, Mapping) else labels],
            np.zeros(len(ts), np.int32),
            ts,
            np.ascontiguousarray(values, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.timestamps)

    def iter_series(self) -> Iterable[tuple[LabelSet, np.ndarray, np.ndarray]]:
        """Yield ``(labels, timestamps, values)`` per series, samples in batch order."""
        if not len(self):
            return
        order = np.argsort(self.series_idx, kind="stable")
        idx = self.series_idx[order]
        bounds = np.flatnonzero(np.diff(idx)) + 1
        for chunk in np.split(order, bounds):
            yield (
                self.series[int(self.series_idx[chunk[0]])],
                self.timestamps[chunk],
                self.values[chunk],
            )

    @staticmethod
    def concat(batches: Iterable[SampleBatch]) -> SampleBatch:
        """Merge batches, re-indexing so each distinct label set appears once."""
        series: list[LabelSet] = []
        pos: dict[LabelSet, int] = {}
        idx_parts, ts_parts, val_parts = [], [], []
        for b in batches:
            remap = np.empty(len(b.series), np.int32)
            for i, s in enumerate(b.series):
                j = pos.get(s)
                if j is None:
                    j = pos[s] = len(series)
                    series.append(s)
                remap[i] = j
            idx_parts.append(
                remap[b.series_idx] if len(b.series) else b.series_idx.astype(np.int32)
            )
            ts_parts.append(b.timestamps)
            val_parts.append(b.values)
        if not ts_parts:
            return SampleBatch.empty()
        return SampleBatch(
            series,
            np.concatenate(idx_parts).astype(np.int32, copy=False),
            np.concatenate(ts_parts).astype(np.int64, copy=False),
            np.concatenate(val_parts).astype(np.float64, copy=False),
        )


@dataclass
class BatchBuilder:
    """Accumulates samples one at a time or per series, then builds a ``SampleBatch``.

    Parsers that find a label set again reuse its index, so the batch lists
    each series once.
    """

    _series: list[LabelSet] = field(default_factory=list)
    _pos: dict[LabelSet, int] = field(default_factory=dict)
    _idx: list[int] = field(default_factory=list)
    _ts: list[int] = field(default_factory=list)
    _vals: list[float] = field(default_factory=list)
    _bulk: list[SampleBatch] = field(default_factory=list)

    def series_index(self, labels: LabelSet) -> int:
        i = self._pos.get(labels)
        if i is None:
            i = self._pos[labels] = len(self._series)
            self._series.append(labels)
        return i

    def add(self, labels: LabelSet, timestamp_ms: int, value: float) -> None:
        self._idx.append(self.series_index(labels))
        self._ts.append(timestamp_ms)
        self._vals.append(value)

    def add_many(self, labels: LabelSet, timestamps: np.ndarray, values: np.ndarray) -> None:
        self._bulk.append(SampleBatch.from_arrays(labels, timestamps, values))

    def __len__(self) -> int:
        return len(self._ts) + sum(len(b) for b in self._bulk)

    def build(self) -> SampleBatch:
        own = SampleBatch(
            list(self._series),
            np.asarray(self._idx, dtype=np.int32),
            np.asarray(self._ts, dtype=np.int64),
            np.asarray(self._vals, dtype=np.float64),
        )
        return SampleBatch.concat([own, *self._bulk]) if self._bulk else own


@dataclass(frozen=True)
class MetricMetadata:
    """What an exposition says about a metric family (``# TYPE``, ``# HELP``, ``# UNIT``)."""

    type: str = "unknown"  # counter|gauge|histogram|summary|gaugehistogram|stateset|info|unknown
    help: str = ""
    unit: str = ""


def conventional_metadata(
    names: Iterable[str], help_by_family: Mapping[str, str] | None = None
) -> dict[str, MetricMetadata]:
    """Metadata of the families of ``names`` from Prometheus's naming conventions, for
    producers that know their metrics but write no exposition (the host collector, the
    demo): ``*_bucket`` (with its ``_sum`` and ``_count``) a histogram, ``*_total`` a
    counter, anything else a gauge; help text from ``help_by_family`` when given.

    >>> md = conventional_metadata(["a_total", "b_bucket", "b_sum", "c"], {"c": "C."})
    >>> {k: (v.type, v.help) for k, v in md.items()}
    {'a_total': ('counter', ''), 'b': ('histogram', ''), 'c': ('gauge', 'C.')}
    """
    names = set(names)
    histograms = {n.removesuffix("_bucket") for n in names if n.endswith("_bucket")}
    helps = help_by_family or {}
    out: dict[str, MetricMetadata] = {}
    for name in sorted(names):
        family, kind = name, "gauge"
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in histograms:
                family, kind = name.removesuffix(suffix), "histogram"
        if kind == "gauge" and name.endswith("_total"):
            kind = "counter"
        out[family] = MetricMetadata(kind, helps.get(family, ""))
    return out


@dataclass
class ParseResult:
    """What a parser returns: the good samples, one error per rejected line or sample,
    and any metric-family metadata the payload carried (keyed by family name)."""

    batch: SampleBatch
    errors: list[LineError] = field(default_factory=list)
    metadata: dict[str, MetricMetadata] = field(default_factory=dict)
