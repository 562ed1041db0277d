import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_strategies import as_dict, series_strategy

from perfintel.batch import SampleBatch
from perfintel.ingest.influx import (
    format_influx_line_protocol,
    parse_influx_line_protocol,
    split_metric_name,
)

NOW = 1_700_000_000_000


def parse(data: bytes, **kw):
    kw.setdefault("default_timestamp_ms", NOW)
    return parse_influx_line_protocol(data, **kw)


def samples(result):
    b = result.batch
    out = [
        (dict(b.series[i]), int(t), float(v))
        for i, t, v in zip(b.series_idx.tolist(), b.timestamps, b.values, strict=True)
    ]
    return sorted(out, key=lambda s: (sorted(s[0].items()), s[1], s[2]))


def test_telegraf_line():
    r = parse(b"cpu,host=h1,service=s2 usage_idle=12.5,usage_user=3.25 1700000000000000000\n")
    assert not r.errors
    assert samples(r) == [
        ({"__name__": "cpu_usage_idle", "host": "h1", "service": "s2"}, 1700000000000, 12.5),
        ({"__name__": "cpu_usage_user", "host": "h1", "service": "s2"}, 1700000000000, 3.25),
    ]


def test_field_types():
    r = parse(
        b'm a=1,b=-2i,c=3u,d=t,e=FALSE,f=True,g=-1.5e+78,h="str",i=F 1000000\n'
        b"m j=9223372036854775807i,k=18446744073709551615u 1000000\n"
    )
    assert not r.errors
    got = {s[0]["__name__"]: s[2] for s in samples(r)}
    assert got == {
        "m_a": 1.0,
        "m_b": -2.0,
        "m_c": 3.0,
        "m_d": 1.0,
        "m_e": 0.0,
        "m_f": 1.0,
        "m_g": -1.5e78,
        "m_i": 0.0,
        "m_j": float(2**63 - 1),
        "m_k": float(2**64 - 1),
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"m x=1.5i 1", "invalid integer value '1.5i'"),
        (b"m x=-1u 1", "invalid unsigned value '-1u'"),
        (b"m x=9223372036854775808i 1", "out of the int64 range"),
        (b"m x=18446744073709551616u 1", "out of the uint64 range"),
        (b"m x=1_0 1", "invalid field value '1_0'"),
        (b"m x=abc 1", "invalid field value 'abc'"),
        (b"m x=1 abc", "invalid timestamp 'abc'"),
        (b"m x=1 99999999999999999999", "out of the int64 range"),
        (b'm s="only strings" 1', "no numeric fields"),
        (b"m", "missing fields"),
        (b"m,t= x=1 1", "invalid tag set"),
        (b"m x= 1", "missing value of field 'x'"),
        (b"m x=1=2 1", "invalid field value '1=2'"),
        (b'm x="unterminated 1', "unterminated string"),
        (b"m,__name__=x y=1 1", "repeats label '__name__'"),
    ],
)
def test_bad_lines(line, reason):
    r = parse(b"ok v=1 1\n" + line + b"\nok v=2 2\n", precision="ms")
    assert [s[2] for s in samples(r)] == [1.0, 2.0]
    assert len(r.errors) == 1, r.errors
    assert r.errors[0].line == 2
    assert reason in r.errors[0].reason


def test_bad_lines_in_a_large_payload_keep_line_numbers():
    lines = [b"cpu,host=h%d usage=%d.5 %d" % (i % 7, i, i * 1_000_000) for i in range(500)]
    lines[10] = b"cpu,host=x usage=oops 1"
    lines[250] = b"cpu,host=x usage=1i5 1"
    lines[499] = b"cpu,host=x usage=1 not_a_ts"
    lines.insert(300, b"# a comment")
    lines.insert(301, b"")
    r = parse(b"\n".join(lines))
    assert [e.line for e in r.errors] == [11, 251, 502]
    assert len(r.batch) == 497


def test_string_fields_are_skipped_silently():
    r = parse(b'm,t=a s="a b,c=d",x=1,y="z\\"q" 5000000')
    assert not r.errors
    assert samples(r) == [({"__name__": "m_x", "t": "a"}, 5, 1.0)]


def test_escaping_rules():
    r = parse(
        b"my\\ meas\\,ure,tag\\ key=tag\\,val\\=ue\\ x,t2=a\\\\b,t3=c\\d fie\\=ld\\ k=1 1000000\n"
    )
    assert not r.errors
    labels, ts, value = samples(r)[0]
    assert labels == {
        "__name__": "my_meas_ure_fie_ld_k",
        "tag_key": "tag,val=ue x",
        "t2": "a\\b",
        "t3": "c\\d",
    }
    assert (ts, value) == (1, 1.0)


def test_sanitised_names():
    r = parse(b"9cpu.load,host-name=a avg-1m=1 0")
    assert samples(r)[0][0] == {"__name__": "_9cpu_load_avg_1m", "host_name": "a"}


@pytest.mark.parametrize(
    ("precision", "stamp", "ms"),
    [
        ("ns", 1_700_000_000_123_456_789, 1_700_000_000_123),
        ("ns", -1, -1),  # floor division
        ("us", 1_700_000_000_123_456, 1_700_000_000_123),
        ("u", 1_700_000_000_123_456, 1_700_000_000_123),
        ("µ", 1_700_000_000_123_456, 1_700_000_000_123),
        ("ms", 1_700_000_000_123, 1_700_000_000_123),
        ("s", 1_700_000_000, 1_700_000_000_000),
        ("m", 28_333_333, 1_699_999_980_000),
        ("h", 472_222, 1_699_999_200_000),
    ],
)
def test_precision(precision, stamp, ms):
    r = parse(b"m x=1 %d\nm,a=b x=1,y=2 %d" % (stamp, stamp), precision=precision)
    assert not r.errors
    assert set(r.batch.timestamps.tolist()) == {ms}


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        parse(b"m x=1", precision="d")


def test_missing_timestamp_uses_default_and_mixes():
    r = parse(b"m x=1\nm x=2 5000000\nm y=3\n")
    assert not r.errors
    assert sorted(r.batch.timestamps.tolist()) == [5, NOW, NOW]


def test_comments_blank_lines_whitespace_and_crlf():
    r = parse(b"# comment\n\n  m x=1 1000000\r\nm x=2 2000000\r\n   \n\tm x=3 3000000\n")
    assert not r.errors
    assert sorted(r.batch.values.tolist()) == [1.0, 2.0, 3.0]


def test_nan_and_inf_are_accepted():
    r = parse(b"m a=NaN,b=+Inf,c=-Inf,d=inf 1")
    vals = {s[0]["__name__"]: s[2] for s in samples(r)}
    assert np.isnan(vals["m_a"]) and vals["m_b"] == vals["m_d"] == float("inf")
    assert vals["m_c"] == float("-inf")


def test_series_are_listed_once():
    r = parse(b"m,a=1,b=2 x=1 1\nm,b=2,a=1 x=2 2\nm,a=1,b=2 x=3 3\n")
    assert len(r.batch.series) == 1 and len(r.batch) == 3


def test_split_metric_name():
    assert split_metric_name("cpu_usage_idle") == ("cpu_usage", "idle")
    assert split_metric_name("up") == ("up", "value")


def _influx_names():
    return st.tuples(
        st.from_regex(r"[a-zA-Z:][a-zA-Z0-9_:]{0,8}", fullmatch=True),
        st.from_regex(r"[a-zA-Z0-9:]{1,6}", fullmatch=True),
    ).map(lambda mf: f"{mf[0]}_{mf[1]}")


tag_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(series_strategy(names=_influx_names(), lvalues=tag_values))
def test_round_trip_ms(batch):
    text = format_influx_line_protocol(batch, precision="ms")
    r = parse(text, precision="ms")
    assert not r.errors, (text, r.errors)
    assert as_dict(r.batch, canonical_nan=True) == as_dict(batch, canonical_nan=True)


@settings(max_examples=60, deadline=None)
@given(
    series_strategy(
        names=_influx_names(),
        lvalues=tag_values,
        ts=st.integers(-(2**63 // 1_000_000), (2**63 - 1) // 1_000_000),
    )
)
def test_round_trip_ns(batch):
    r = parse(format_influx_line_protocol(batch, precision="ns"), precision="ns")
    assert not r.errors
    assert as_dict(r.batch, canonical_nan=True) == as_dict(batch, canonical_nan=True)


def test_formatter_refuses_newlines_in_tag_values():
    batch = SampleBatch.from_arrays(
        {"__name__": "a_b", "t": "x\ny"}, np.array([1]), np.array([1.0])
    )
    with pytest.raises(ValueError, match="line break"):
        format_influx_line_protocol(batch)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["ns", "s", "h"]))
def test_never_crashes_on_arbitrary_bytes(data, precision):
    r = parse(data, precision=precision)
    assert len(r.batch.values) == len(r.batch.timestamps) == len(r.batch.series_idx)


parts = st.sampled_from(
    [
        "m",
        ",",
        "=",
        " ",
        "\\",
        '"',
        "1",
        "1i",
        "2u",
        "t",
        "x",
        "\n",
        "#",
        "1.5",
        "-",
        "e",
        "_",
        "NaN",
        "999999999999999999999",
        "\t",
        "\r",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(parts, max_size=40).map("".join), st.sampled_from(["ns", "ms", "h"]))
def test_never_crashes_on_near_miss_lines(text, precision):
    r = parse(text.encode(), precision=precision)
    b = r.batch
    assert len(b.values) == len(b.timestamps) == len(b.series_idx)
    assert all(0 <= i < len(b.series) for i in b.series_idx.tolist())
    # Every line either produced samples or an error, never both silently lost.
    assert all(e.line >= 1 for e in r.errors)


def test_bulk_and_careful_paths_agree():
    base = [b"cpu,host=h%d,dc=x usage=%d.25,idle=%di,ok=t %d" % (i % 5, i, i, i) for i in range(50)]
    fast = parse(b"\n".join(base), precision="ms")
    # An escape anywhere sends that line down the careful path.
    careful = parse(b"\n".join(line.replace(b"dc=x", b"dc=\\x") for line in base), precision="ms")
    assert not fast.errors and not careful.errors
    renamed = {
        tuple((k, v.replace("\\x", "x")) for k, v in ls): rows
        for ls, rows in as_dict(careful.batch).items()
    }
    assert renamed == as_dict(fast.batch)
