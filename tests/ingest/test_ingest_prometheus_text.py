import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_strategies import as_dict, series_strategy

from perfintel.batch import MetricMetadata, SampleBatch
from perfintel.ingest.prometheus_text import (
    content_type_is_openmetrics,
    format_go_float,
    format_prometheus_text,
    parse_prometheus_text,
)
from perfintel.model import STALE_NAN

NOW = 1_700_000_000_000


def samples(result):
    b = result.batch
    return [
        (dict(b.series[i]), int(t), float(v))
        for i, t, v in zip(b.series_idx.tolist(), b.timestamps, b.values, strict=True)
    ]


def test_text_004_example_from_the_docs():
    text = rb"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045
"""
    r = parse_prometheus_text(text, default_timestamp_ms=NOW)
    assert not r.errors
    got = samples(r)
    assert got[0] == (
        {"__name__": "http_requests_total", "method": "post", "code": "200"},
        1395066363000,
        1027.0,
    )
    assert got[2][0]["path"] == "C:\\DIR\\FILE.TXT"
    assert got[2][0]["error"] == 'Cannot find file:\n"FILE.TXT"'
    assert got[2][1] == NOW
    assert got[3] == ({"__name__": "metric_without_timestamp_and_labels"}, NOW, 12.47)
    assert got[4][1:] == (-3982045, float("inf"))
    assert r.metadata["http_requests_total"] == MetricMetadata(
        type="counter", help="The total number of HTTP requests."
    )


def test_004_timestamps_are_milliseconds_and_openmetrics_seconds():
    r004 = parse_prometheus_text(b"a 1 1520879607789\n", default_timestamp_ms=0)
    om = parse_prometheus_text(b"a 1 1520879607.789\n# EOF\n", default_timestamp_ms=0)
    assert r004.batch.timestamps.tolist() == om.batch.timestamps.tolist() == [1520879607789]
    om_int = parse_prometheus_text(b"a 1 1520879607\n# EOF\n", default_timestamp_ms=0)
    assert om_int.batch.timestamps.tolist() == [1520879607000]
    frac = parse_prometheus_text(b"a 1 1.5e3\n", default_timestamp_ms=0, openmetrics=True)
    assert frac.batch.timestamps.tolist() == [1_500_000]


def test_004_rejects_fractional_timestamps():
    r = parse_prometheus_text(b"a 1 1.5\nb 2\n", default_timestamp_ms=7, openmetrics=False)
    assert samples(r) == [({"__name__": "b"}, 7, 2.0)]
    assert r.errors[0].line == 1 and "integer milliseconds" in r.errors[0].reason


def test_openmetrics_detection_and_content_type():
    assert content_type_is_openmetrics("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert not content_type_is_openmetrics("text/plain; version=0.0.4")
    assert not content_type_is_openmetrics(None)
    unit_only = parse_prometheus_text(
        b"# UNIT x_seconds seconds\nx_seconds 1 2\n", default_timestamp_ms=0
    )
    assert unit_only.batch.timestamps.tolist() == [2000]
    assert unit_only.errors[0].reason.startswith("OpenMetrics exposition does not end")


def test_openmetrics_full_example():
    text = b"""# TYPE foo counter
# UNIT foo seconds
# HELP foo Help with \\"quotes\\" and \\\\.
foo_total{a="b"} 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created{a="b"} 1520430000.123 1520879607.789
# TYPE st stateset
st{st="a"} 1
st{st="b"} 0
# TYPE i info
i_info{version="1.0"} 1
# EOF
"""
    r = parse_prometheus_text(text, default_timestamp_ms=0)
    assert not r.errors
    assert r.metadata["foo"] == MetricMetadata(
        type="counter", help='Help with "quotes" and \\.', unit="seconds"
    )
    got = samples(r)
    assert got[0] == ({"__name__": "foo_total", "a": "b"}, 1520879607789, 17.0)
    # _created is kept as an ordinary sample (documented decision).
    assert got[1] == ({"__name__": "foo_created", "a": "b"}, 1520879607789, 1520430000.123)
    assert r.metadata["st"].type == "stateset"
    assert len(got) == 5


def test_content_after_eof_is_an_error():
    r = parse_prometheus_text(b"a 1\n# EOF\nb 2\n", default_timestamp_ms=0)
    assert [s[0]["__name__"] for s in samples(r)] == ["a"]
    assert (r.errors[0].line, r.errors[0].reason) == (3, "content after # EOF")


def test_histogram_buckets_and_le_normalisation():
    text = b"""# TYPE h histogram
h_bucket{le="0.05"} 24054
h_bucket{le="1"} 33444
h_bucket{le="+Inf"} 144320
h_sum 53423
h_count 144320
# TYPE s summary
s{quantile="0"} 1
s{quantile="0.5"} 2
s_sum 3
s_count 2
# TYPE u untyped
u_bucket{le="1"} 5
"""
    r = parse_prometheus_text(text, default_timestamp_ms=0)
    assert not r.errors
    les = [s[0].get("le") for s in samples(r) if s[0]["__name__"] == "h_bucket"]
    assert les == ["0.05", "1.0", "+Inf"]
    qs = [s[0]["quantile"] for s in samples(r) if s[0]["__name__"] == "s"]
    assert qs == ["0.0", "0.5"]
    assert [s[0].get("le") for s in samples(r) if s[0]["__name__"] == "u_bucket"] == ["1"]
    assert r.metadata["u"].type == "unknown"


def test_bad_line_keeps_neighbours_with_line_numbers():
    text = b"""ok_1 1
bad{x="y" 1
ok_2 2
bad_value abc
x{a="b",a="c"} 1
0starts_with_digit 1
ok_3{l="v"} 3
# TYPE t wrongtype
has_underscore 1_000
"""
    r = parse_prometheus_text(text, default_timestamp_ms=0)
    assert [s[0]["__name__"] for s in samples(r)] == ["ok_1", "ok_2", "ok_3"]
    lines = [e.line for e in r.errors]
    assert lines == [2, 4, 5, 6, 8, 9]
    assert "abc" in r.errors[1].reason
    assert "repeats label 'a'" in r.errors[2].reason
    assert "wrongtype" in r.errors[4].reason


def test_nan_and_inf_values():
    r = parse_prometheus_text(
        b"a NaN\nb +Inf\nc -Inf\nd Inf\ne nan\nf 0x1p-2\n", default_timestamp_ms=0
    )
    assert not r.errors
    vals = r.batch.values
    assert np.isnan(vals[[0, 4]]).all()
    assert vals[[1, 2, 3, 5]].tolist() == [np.inf, -np.inf, np.inf, 0.25]


def test_duplicate_type_is_an_error_first_kept():
    r = parse_prometheus_text(b"# TYPE a gauge\n# TYPE a counter\na 1\n", default_timestamp_ms=0)
    assert r.metadata["a"].type == "gauge"
    assert r.errors[0].line == 2


def test_crlf_and_invalid_utf8_lines():
    r = parse_prometheus_text(b'a{x="1"} 1\r\nb{x="\xff"} 2\nc 3\n', default_timestamp_ms=0)
    assert [s[0]["__name__"] for s in samples(r)] == ["a", "c"]
    assert r.errors[0].line == 2


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (-0.0, "-0"),
        (5e-324, "5e-324"),
    ],
)
def test_go_float_formatting(value, text):
    assert format_go_float(value) == text


def test_formatter_writes_escaped_families_with_metadata():
    batch = SampleBatch.concat(
        [
            SampleBatch.from_arrays(
                {"__name__": "h_bucket", "le": le}, np.array([5]), np.array([float(i)])
            )
            for i, le in enumerate(["+Inf", "0.5", "10.0"])
        ]
        + [
            SampleBatch.from_arrays(
                {"__name__": "x", "v": 'a"b\\c\nd'}, np.array([1]), np.array([STALE_NAN])
            )
        ]
    )
    text = format_prometheus_text(batch, {"h": MetricMetadata("histogram", "Help\nme")}).decode()
    assert text.splitlines() == [
        "# HELP h Help\\nme",
        "# TYPE h histogram",
        'h_bucket{le="0.5"} 1 5',
        'h_bucket{le="10.0"} 2 5',
        'h_bucket{le="+Inf"} 0 5',
        'x{v="a\\"b\\\\c\\nd"} NaN 1',
    ]


@settings(max_examples=150, deadline=None)
@given(series_strategy())
def test_round_trip(batch):
    text = format_prometheus_text(batch)
    r = parse_prometheus_text(text, default_timestamp_ms=0, openmetrics=False)
    assert not r.errors, (text, r.errors)
    # NaN payloads (and the staleness marker) cannot be told apart in text.
    assert as_dict(r.batch, canonical_nan=True) == as_dict(batch, canonical_nan=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([None, True, False]))
def test_never_crashes_on_arbitrary_bytes(data, om):
    r = parse_prometheus_text(data, default_timestamp_ms=0, openmetrics=om)
    assert len(r.batch.values) == len(r.batch.timestamps)


line_parts = st.sampled_from(
    [
        "a",
        "{",
        "}",
        '"',
        "\\",
        "=",
        ",",
        " ",
        "1",
        "1.5",
        "NaN",
        "+Inf",
        "#",
        "# EOF",
        "\n",
        "# TYPE a histogram",
        "# HELP",
        "_bucket",
        "le",
        "x",
        "\t",
        "e9",
        "-",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(line_parts, max_size=40).map("".join), st.sampled_from([None, True, False]))
def test_never_crashes_on_near_miss_text(text, om):
    parse_prometheus_text(text.encode(), default_timestamp_ms=0, openmetrics=om)


def test_a_body_read_in_small_pieces_parses_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large bodies are decoded and split a megabyte at a time (the GIL is never held
    for one long split): piece boundaries change nothing, invalid UTF-8 included."""
    from perfintel.ingest import prometheus_text

    body = b"".join(f'x{{i="{i}"}} {i} 1000\n'.encode() for i in range(500))
    body += b"bad line\n\xff\xfe{ 1\n\n# EOF"
    whole = parse_prometheus_text(body, default_timestamp_ms=0, openmetrics=True)
    monkeypatch.setattr(prometheus_text, "_TEXT_PIECE", 7)
    pieces = parse_prometheus_text(body, default_timestamp_ms=0, openmetrics=True)
    assert [str(e) for e in pieces.errors] == [str(e) for e in whole.errors]
    assert len(whole.errors) >= 2
    assert pieces.batch.series == whole.batch.series
    assert pieces.batch.values.tolist() == whole.batch.values.tolist() == list(range(500))
