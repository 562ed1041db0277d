"""Hypothesis strategies and comparison helpers shared by the ingest parser tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from perfintel.batch import SampleBatch
from perfintel.model import STALE_NAN, LabelSet

CANONICAL_NAN_BITS = int(np.array([np.nan]).view(np.uint64)[0])

metric_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True)
label_values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(STALE_NAN),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e6, 1e-5, 5e-324, 1.7976931348623157e308]),
)


def series_strategy(
    names: st.SearchStrategy[str] = metric_names,
    lvalues: st.SearchStrategy[str] = label_values,
    ts: st.SearchStrategy[int] = st.integers(-(2**63), 2**63 - 1),
    vals: st.SearchStrategy[float] = values,
) -> st.SearchStrategy[SampleBatch]:
    """Batches of up to 4 series with distinct labels and distinct timestamps per series."""

    def one(draw_name: str, labels: dict[str, str], samples: dict[int, float]) -> SampleBatch:
        ls = tuple(sorted([("__name__", draw_name), *labels.items()]))
        t = np.array(list(samples), np.int64)
        v = np.array(list(samples.values()), np.float64)
        return SampleBatch.from_arrays(ls, t, v)

    single = st.builds(
        one,
        names,
        st.dictionaries(label_names, lvalues, max_size=3),
        st.dictionaries(ts, vals, min_size=1, max_size=5),
    )
    return st.lists(single, min_size=1, max_size=4).map(SampleBatch.concat)


def as_dict(
    batch: SampleBatch, *, canonical_nan: bool = False
) -> dict[LabelSet, list[tuple[int, int]]]:
    """{labels: sorted [(timestamp, value bits)]}; NaNs collapsed to one bit pattern if asked."""
    out: dict[LabelSet, list[tuple[int, int]]] = {}
    for labels, ts, vals in batch.iter_series():
        bits = np.ascontiguousarray(vals, np.float64).view(np.uint64).astype(object)
        if canonical_nan:
            bits = np.where(np.isnan(vals), CANONICAL_NAN_BITS, bits)
        out.setdefault(labels, []).extend(zip(ts.tolist(), [int(b) for b in bits], strict=True))
    return {k: sorted(v) for k, v in out.items()}
