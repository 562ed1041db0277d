import contextlib

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_strategies import as_dict, series_strategy

from perfintel.errors import ParseError
from perfintel.ingest.json_ingest import IngestBody, format_json_ingest, parse_json_ingest


def test_example_body():
    body = {
        "series": [
            {
                "metric": "cpu_usage",
                "labels": {"host": "a"},
                "samples": [
                    [1700000000000, 0.5],
                    [1700000010000, "NaN"],
                    [3, "+Inf"],
                    [4, "-Inf"],
                    [5, "Inf"],
                    [6, 7],
                ],
            }
        ]
    }
    r = parse_json_ingest(orjson.dumps(body))
    assert not r.errors
    assert r.batch.series == [(("__name__", "cpu_usage"), ("host", "a"))]
    v = r.batch.values
    assert (
        v[0] == 0.5 and np.isnan(v[1]) and v[2] == v[4] == np.inf and v[3] == -np.inf and v[5] == 7
    )


def test_bad_samples_and_series_are_rejected_individually():
    body = {
        "series": [
            {
                "metric": "a",
                "samples": [[1, 1], [2, "abc"], [3.5, 1], [4, True], [5], [2**63, 1], [6, None]],
            },
            {"metric": "0bad", "samples": [[1, 1]]},
            {"labels": {"x": "y"}, "samples": [[1, 1]]},
            "not an object",
            {"metric": "b", "labels": {"x": 1}, "samples": [[1, 1]]},
            {"metric": "c", "samples": "nope"},
            {"metric": "d", "labels": {"__name__": "e"}, "samples": [[1, 1]]},
            {"metric": "f", "extra": 1, "samples": []},
            {"labels": {"__name__": "g"}, "samples": [[9, 9.5]]},
        ]
    }
    r = parse_json_ingest(orjson.dumps(body))
    assert [dict(s)["__name__"] for s in r.batch.series] == ["a", "g"]
    assert r.batch.values.tolist() == [1.0, 9.5]
    reasons = [e.reason for e in r.errors]
    assert reasons[0] == "series[0].samples[1]: value 'abc' is not a number"
    assert reasons[1] == "series[0].samples[2]: timestamp 3.5 is not an integer (ms)"
    assert reasons[2] == "series[0].samples[3]: value True is not a number"
    assert reasons[3].startswith("series[0].samples[4]: expected [timestamp_ms, value]")
    assert "out of the int64 range" in reasons[4]
    assert reasons[5] == "series[0].samples[6]: value None is not a number"
    assert reasons[6].startswith("series[1]: invalid metric name '0bad'")
    assert reasons[7].startswith("series[2]: series has no metric name")
    assert reasons[8] == "series[3] must be an object"
    assert reasons[9].startswith("series[4].labels.x must be a string")
    assert reasons[10].startswith("series[5].samples must be a list")
    assert "differs from labels.__name__" in reasons[11]
    assert reasons[12] == "series[7]: unexpected field 'extra'"
    assert all(e.line == 0 for e in r.errors)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"data": []}', "'series' list"),
        (b'{"series": {}}', "'series' list"),
        (b'{"series": [], "x": 1}', "unexpected top-level field 'x'"),
        (b"", "not valid JSON"),
    ],
)
def test_unusable_bodies_raise(body, match):
    with pytest.raises(ParseError, match=match):
        parse_json_ingest(body)


def test_models_describe_the_body_for_openapi():
    schema = IngestBody.model_json_schema()
    assert schema["required"] == ["series"]
    series = schema["$defs"]["IngestSeries"]
    assert set(series["properties"]) == {"metric", "labels", "samples"}
    IngestBody.model_validate(
        {"series": [{"metric": "m", "labels": {"a": "b"}, "samples": [[1, 0.5], [2, "NaN"]]}]}
    )


@settings(max_examples=150, deadline=None)
@given(series_strategy(ts=st.integers(-(2**63), 2**63 - 1)))
def test_round_trip(batch):
    r = parse_json_ingest(format_json_ingest(batch))
    assert not r.errors
    assert as_dict(r.batch, canonical_nan=True) == as_dict(batch, canonical_nan=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_never_crashes_on_arbitrary_bytes(data):
    with contextlib.suppress(ParseError):
        parse_json_ingest(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["series", "x"]),
        json_values
        | st.lists(
            st.dictionaries(
                st.sampled_from(["metric", "labels", "samples", "zz"]), json_values, max_size=4
            ),
            max_size=3,
        ),
    )
)
def test_never_crashes_on_arbitrary_json_shapes(doc):
    try:
        data = orjson.dumps(doc)
    except TypeError:
        return  # an integer too large for JSON output
    with contextlib.suppress(ParseError):
        parse_json_ingest(data)
