import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_strategies import as_dict, series_strategy

from perfintel.batch import SampleBatch
from perfintel.ingest.vm_export import format_vm_jsonl, parse_vm_jsonl
from perfintel.model import STALE_NAN, is_stale
from perfintel.storage.base import SeriesSamples


def to_series(batch: SampleBatch) -> list[SeriesSamples]:
    return [SeriesSamples(ls, t, v) for ls, t, v in batch.iter_series()]


def test_reads_what_victoriametrics_exports():
    line = (
        b'{"metric":{"__name__":"x","job":"a"},"values":[1,2.5,+Inf,-Inf,null,'
        + b"17976931348623151"
        + b"0" * 292  # how VictoriaMetrics exports the largest double
        + b'],"timestamps":[1,2,3,4,5,6]}'
    )
    r = parse_vm_jsonl(line + b"\n")
    assert not r.errors
    v = r.batch.values
    assert v[:4].tolist() == [1.0, 2.5, np.inf, -np.inf]
    assert is_stale(v).tolist() == [False, False, False, False, True, False]
    assert v[5] == 1.7976931348623151e308
    assert r.batch.series == [(("__name__", "x"), ("job", "a"))]


def test_reads_bare_tokens_victoriametrics_imports():
    r = parse_vm_jsonl(
        b'{"metric":{"__name__":"x"},"values":[NaN,nan,Inf,inf,-inf,Infinity,1e400,-1e400],'
        b'"timestamps":[1,2,3,4,5,6,7,8]}'
    )
    assert not r.errors
    v = r.batch.values
    assert np.isnan(v[:2]).all() and not is_stale(v).any()
    assert v[2:].tolist() == [np.inf, np.inf, -np.inf, np.inf, np.inf, -np.inf]


def test_bad_lines_are_reported_with_line_numbers():
    data = b"\n".join(
        [
            b'{"metric":{"__name__":"ok"},"values":[1],"timestamps":[1]}',
            b"not json",
            b'{"metric":{"__name__":"x"},"values":["NaN"],"timestamps":[1]}',
            b'{"metric":{"__name__":"x"},"values":[1,2],"timestamps":[1]}',
            b"",
            b'{"metric":{"job":"x"},"values":[1],"timestamps":[1]}',
            b'{"metric":{"__name__":"x"},"values":[1],"timestamps":[1.5]}',
            b'{"metric":{"__name__":"x","a":1},"values":[1],"timestamps":[1]}',
            b"[1]",
            b'{"metric":{"__name__":"ok"},"values":[2],"timestamps":[2]}',
        ]
    )
    r = parse_vm_jsonl(data)
    assert r.batch.values.tolist() == [1.0, 2.0]
    assert [e.line for e in r.errors] == [2, 3, 4, 6, 7, 8, 9]
    assert r.errors[1].reason == "values[0]: 'NaN' is not a number"
    assert r.errors[2].reason == "2 values but 1 timestamps"


def test_formats_like_victoriametrics_and_splits_long_series():
    s = SeriesSamples(
        (("__name__", "x"), ("q", 'a"b')),
        np.arange(5, dtype=np.int64),
        np.array([1.0, STALE_NAN, np.nan, -np.inf, 1e6]),
    )
    lines = list(format_vm_jsonl([s], max_samples_per_line=3))
    assert lines == [
        b'{"metric":{"__name__":"x","q":"a\\"b"},"values":[1,null,NaN],"timestamps":[0,1,2]}\n',
        b'{"metric":{"__name__":"x","q":"a\\"b"},"values":[-Inf,1000000],"timestamps":[3,4]}\n',
    ]
    dropped = list(format_vm_jsonl([s], stale_markers="drop"))
    assert b"null" not in dropped[0] and b'"timestamps":[0,2,3,4]' in dropped[0]


def test_default_split_is_10000_samples():
    n = 25_000
    s = SeriesSamples((("__name__", "x"),), np.arange(n, dtype=np.int64), np.ones(n))
    lines = list(format_vm_jsonl([s]))
    assert len(lines) == 3
    r = parse_vm_jsonl(b"".join(lines))
    assert len(r.batch) == n and len(r.batch.series) == 1


@settings(max_examples=150, deadline=None)
@given(series_strategy())
def test_round_trip(batch):
    r = parse_vm_jsonl(b"".join(format_vm_jsonl(to_series(batch))))
    assert not r.errors
    # Bit-exact, staleness markers included; other NaN payloads become the canonical NaN.
    got = as_dict(r.batch)
    want = as_dict(batch)
    nan_bits = int(np.array([np.nan]).view(np.uint64)[0])
    stale_bits = int(np.array([STALE_NAN]).view(np.uint64)[0])
    for key, rows in want.items():
        want[key] = sorted(
            (
                t,
                b
                if b == stale_bits or not np.isnan(np.array([b], np.uint64).view(np.float64)[0])
                else nan_bits,
            )
            for t, b in rows
        )
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_never_crashes_on_arbitrary_bytes(data):
    r = parse_vm_jsonl(data)
    assert len(r.batch.values) == len(r.batch.timestamps)


parts = st.sampled_from(
    [
        '{"metric":{"__name__":"x"}',
        ',"values":[',
        "1",
        ",",
        "NaN",
        "+Inf",
        "null",
        '"s"',
        "]",
        ',"timestamps":[',
        "}",
        "\n",
        "1e400",
        "-",
        "[",
        "{",
        '"',
        "\\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(parts, max_size=30).map("".join))
def test_never_crashes_on_near_miss_lines(text):
    parse_vm_jsonl(text.encode())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(min_value=-(2**60), max_value=2**60).map(float),
            st.sampled_from([0.0, -0.0, 1e-4, 9.999e-5, 1e6, 2.0**53, -(2.0**53), STALE_NAN]),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_the_fast_value_formatting_is_exact_and_json(values):
    vals = np.array(values, np.float64)
    s = SeriesSamples((("__name__", "x"),), np.arange(len(vals), dtype=np.int64), vals)
    line = b"".join(format_vm_jsonl([s]))
    back = parse_vm_jsonl(line)
    assert not back.errors
    got = back.batch.values
    nan = np.isnan(vals)
    assert (np.isnan(got) == nan).all()
    assert (is_stale(got) == is_stale(vals)).all()
    assert (got[~nan].view(np.uint64) == vals[~nan].view(np.uint64)).all()  # -0.0 included
