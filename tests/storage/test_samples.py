"""``rollup_many`` (all series at once) gives each series the buckets ``rollup`` gives it."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from perfintel.model import STALE_NAN
from perfintel.storage.samples import rollup, rollup_many

values = st.one_of(st.floats(allow_nan=True), st.just(STALE_NAN), st.integers(-5, 5).map(float))


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            hnp.arrays(
                np.int64, st.integers(0, 30), elements=st.integers(0, 2_000_000), unique=True
            ),
        ),
        max_size=5,
        unique_by=lambda x: x[0],
    ),
    st.data(),
)
def test_rollup_many_matches_rollup_per_series(series, data):
    series = sorted(series, key=lambda x: x[0])
    parts = []
    for sid, ts in series:
        ts = np.sort(ts)
        vals = data.draw(hnp.arrays(np.float64, len(ts), elements=values))
        parts.append((sid, ts, vals))
    sids = np.concatenate(
        [np.full(len(t), s, np.int64) for s, t, _ in parts] or [np.empty(0, np.int64)]
    )
    ts = np.concatenate([t for _, t, _ in parts] or [np.empty(0, np.int64)])
    vals = np.concatenate([v for _, _, v in parts] or [np.empty(0)])
    got_sids, *got = rollup_many(sids, ts, vals, 60_000)
    for sid, t, v in parts:
        want = rollup(t, v, 60_000)
        mine = got_sids == sid
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a[mine], b, equal_nan=True)
    assert len(got_sids) == sum(len(rollup(t, v, 60_000)[0]) for _, t, v in parts)
