"""OTLP metrics to Prometheus samples: names, labels, resource, every point kind, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from perfintel.errors import ParseError
from perfintel.ingest.otlp import (
    encode_otlp_status,
    label_name,
    metric_name,
    parse_otlp_metrics,
)
from perfintel.model import is_stale, validate_label_set

T_NS = 1_767_000_000_123_456_789
T_MS = 1_767_000_000_123
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # from the OpenTelemetry compatibility specification and Prometheus's translator
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("system.network.io", "By", "counter", "system_network_io_bytes_total"),
        ("system.cpu.utilization", "1", "gauge", "system_cpu_utilization_ratio"),
        ("system.cpu.utilization", "1", "sum", "system_cpu_utilization"),  # updown: no _ratio
        ("http.server.requests", "{request}", "counter", "http_server_requests_total"),
        ("throughput", "By/s", "gauge", "throughput_bytes_per_second"),
        ("requests", "{request}/s", "gauge", "requests_per_second"),
        ("temperature", "Cel", "gauge", "temperature_celsius"),
        ("disk.free", "%", "gauge", "disk_free_percent"),
        ("latency_seconds", "s", "gauge", "latency_seconds"),  # the unit is there already
        ("requests_total", "", "counter", "requests_total"),  # _total not doubled
        ("total.requests", "", "counter", "requests_total"),  # ... and moved to the end
        ("ratio.of.x", "1", "gauge", "of_x_ratio"),
        ("2xx.responses", "", "counter", "_2xx_responses_total"),
        ("weird..name__with---runs", "", "gauge", "weird_name_with_runs"),
        ("app:cache:hits", "", "counter", "app:cache:hits_total"),
        ("size", "foo.bar", "gauge", "size_foo_bar"),
        ("uptime", "d", "gauge", "uptime_days"),
        ("speed", "m/h", "gauge", "speed_meters_per_hour"),
    ],
)
def test_metric_names_follow_prometheus(name: str, unit: str, kind: str, expected: str) -> None:
    assert metric_name(name, unit, kind) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("http.request.method", "http_request_method"),
        ("service.name", "service_name"),
        ("2xx", "key_2xx"),
        ("__reserved__", "__reserved__"),
        ("a..b__c", "a_b_c"),
        ("_private", "_private"),
        ("ünïcode", "_n_code"),
        ("...", ""),
        ("", ""),
    ],
)
def test_label_names_follow_prometheus(key: str, expected: str) -> None:
    assert label_name(key) == expected


def _request(
    resource: dict[str, object] | None = None,
) -> tuple[ExportMetricsServiceRequest, object]:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in (resource or {}).items():
        _set(rm.resource.attributes.add(key=k).value, v)
    return req, rm.scope_metrics.add()


def _set(value: object, v: object) -> None:
    if isinstance(v, bool):
        value.bool_value = v  # type: ignore[attr-defined]
    elif isinstance(v, int):
        value.int_value = v  # type: ignore[attr-defined]
    elif isinstance(v, float):
        value.double_value = v  # type: ignore[attr-defined]
    elif isinstance(v, bytes):
        value.bytes_value = v  # type: ignore[attr-defined]
    elif isinstance(v, list):
        for x in v:
            _set(value.array_value.values.add(), x)  # type: ignore[attr-defined]
    else:
        value.string_value = str(v)  # type: ignore[attr-defined]


def _point(points: object, attrs: dict[str, object] | None = None, **fields: object) -> object:
    p = points.add(**{"time_unix_nano": T_NS, **fields})  # type: ignore[attr-defined]
    for k, v in (attrs or {}).items():
        _set(p.attributes.add(key=k).value, v)
    return p


def _samples(body: bytes, *, json: bool = False) -> dict[tuple[tuple[str, str], ...], float]:
    r = parse_otlp_metrics(body, json=json)
    assert not r.errors, r.errors
    return {
        labels: float(v[0])
        for labels, ts, v in r.batch.iter_series()
        if ts.tolist() == [T_MS] * len(ts)
    }


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_resource_gives_job_instance_and_target_info() -> None:
    req, scope = _request(
        {
            "service.name": "checkout",
            "service.namespace": "shop",
            "service.instance.id": "pod-7",
            "deployment.environment": "prod",
            "host.cpu.count": 8,
        }
    )
    m = scope.metrics.add(name="queue.depth", unit="{item}")  # type: ignore[attr-defined]
    _point(m.gauge.data_points, {"queue": "orders"}, as_int=3)
    got = _samples(req.SerializeToString())
    assert got == {
        L(__name__="queue_depth", queue="orders", job="shop/checkout", instance="pod-7"): 3.0,
        L(
            __name__="target_info",
            job="shop/checkout",
            instance="pod-7",
            deployment_environment="prod",
            host_cpu_count="8",
        ): 1.0,
    }


def test_no_target_info_without_other_resource_attributes() -> None:
    req, scope = _request({"service.name": "api"})
    m = scope.metrics.add(name="up")  # type: ignore[attr-defined]
    _point(m.gauge.data_points, as_double=1.0)
    assert _samples(req.SerializeToString()) == {L(__name__="up", job="api"): 1.0}


def test_sums_counters_and_gauges() -> None:
    req, scope = _request()
    c = scope.metrics.add(name="http.server.requests", unit="{request}")  # type: ignore[attr-defined]
    c.sum.is_monotonic = True
    c.sum.aggregation_temporality = CUMULATIVE
    _point(c.sum.data_points, {"code": 200}, as_int=41)
    u = scope.metrics.add(name="connections.active")  # type: ignore[attr-defined]
    u.sum.aggregation_temporality = CUMULATIVE
    _point(u.sum.data_points, as_int=-2)
    got = _samples(req.SerializeToString())
    assert got == {
        L(__name__="http_server_requests_total", code="200"): 41.0,
        L(__name__="connections_active"): -2.0,
    }
    r = parse_otlp_metrics(req.SerializeToString())
    assert r.metadata["http_server_requests_total"].type == "counter"
    assert r.metadata["connections_active"].type == "gauge"


def test_cumulative_histogram_becomes_buckets_sum_and_count() -> None:
    req, scope = _request({"service.name": "api"})
    h = scope.metrics.add(name="http.server.request.duration", unit="s")  # type: ignore[attr-defined]
    h.histogram.aggregation_temporality = CUMULATIVE
    _point(
        h.histogram.data_points,
        {"route": "/x"},
        count=10,
        sum=4.5,
        explicit_bounds=[0.1, 0.5, 2.5],
        bucket_counts=[3, 4, 2, 1],
    )
    name = "http_server_request_duration_seconds"
    base = {"route": "/x", "job": "api"}
    assert _samples(req.SerializeToString()) == {
        L(__name__=f"{name}_bucket", le="0.1", **base): 3.0,
        L(__name__=f"{name}_bucket", le="0.5", **base): 7.0,
        L(__name__=f"{name}_bucket", le="2.5", **base): 9.0,
        L(__name__=f"{name}_bucket", le="+Inf", **base): 10.0,
        L(__name__=f"{name}_sum", **base): 4.5,
        L(__name__=f"{name}_count", **base): 10.0,
    }


def test_summary_becomes_quantiles_sum_and_count() -> None:
    req, scope = _request()
    s = scope.metrics.add(name="rpc.latency", unit="ms")  # type: ignore[attr-defined]
    p = _point(s.summary.data_points, count=5, sum=50.0)
    for q, v in ((0.5, 9.0), (0.99, 20.0)):
        p.quantile_values.add(quantile=q, value=v)  # type: ignore[attr-defined]
    assert _samples(req.SerializeToString()) == {
        L(__name__="rpc_latency_milliseconds", quantile="0.5"): 9.0,
        L(__name__="rpc_latency_milliseconds", quantile="0.99"): 20.0,
        L(__name__="rpc_latency_milliseconds_sum"): 50.0,
        L(__name__="rpc_latency_milliseconds_count"): 5.0,
    }


def test_delta_and_exponential_histograms_are_refused_by_name_and_the_rest_kept() -> None:
    req, scope = _request()
    d = scope.metrics.add(name="delta.requests")  # type: ignore[attr-defined]
    d.sum.is_monotonic = True
    d.sum.aggregation_temporality = DELTA
    _point(d.sum.data_points, as_int=1)
    e = scope.metrics.add(name="exp.latency")  # type: ignore[attr-defined]
    e.exponential_histogram.aggregation_temporality = CUMULATIVE
    _point(e.exponential_histogram.data_points, count=1, scale=2)
    dh = scope.metrics.add(name="delta.hist")  # type: ignore[attr-defined]
    dh.histogram.aggregation_temporality = DELTA
    _point(dh.histogram.data_points, count=1, bucket_counts=[1])
    ok = scope.metrics.add(name="fine")  # type: ignore[attr-defined]
    _point(ok.gauge.data_points, as_double=2.0)
    r = parse_otlp_metrics(req.SerializeToString())
    assert [labels for labels, _, _ in r.batch.iter_series()] == [L(__name__="fine")]
    reasons = [str(e) for e in r.errors]
    assert len(reasons) == 3
    assert reasons[0].startswith("metric 'delta.requests': delta temporality is not supported")
    assert reasons[1].startswith("metric 'exp.latency': exponential histograms are not supported")
    assert reasons[2].startswith("metric 'delta.hist': delta temporality")


def test_no_recorded_value_is_a_staleness_marker() -> None:
    req, scope = _request()
    m = scope.metrics.add(name="gone")  # type: ignore[attr-defined]
    _point(
        m.gauge.data_points,
        as_double=5.0,
        flags=metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK,
    )
    r = parse_otlp_metrics(req.SerializeToString())
    assert is_stale(r.batch.values).tolist() == [True]


def test_attribute_values_of_every_type_and_clashing_keys() -> None:
    req, scope = _request()
    m = scope.metrics.add(name="x")  # type: ignore[attr-defined]
    _point(
        m.gauge.data_points,
        {
            "b": True,
            "i": -3,
            "f": 0.25,
            "arr": ["a", 1],
            "raw": b"\x00\x01",
            "empty": "",
            "a.b": "dot",
            "a_b": "underscore",
        },
        as_double=1.0,
    )
    (labels,) = _samples(req.SerializeToString())
    assert dict(labels) == {
        "__name__": "x",
        "b": "true",
        "i": "-3",
        "f": "0.25",
        "arr": '["a",1]',
        "raw": "AAE=",
        "a_b": "dot;underscore",  # "a.b" < "a_b": values in the order of their keys
    }


def test_json_encoding_gives_the_same_samples() -> None:
    req, scope = _request({"service.name": "api", "region": "eu"})
    h = scope.metrics.add(name="lat", unit="s")  # type: ignore[attr-defined]
    h.histogram.aggregation_temporality = CUMULATIVE
    _point(
        h.histogram.data_points,
        {"k": 1},
        count=3,
        sum=1.5,
        explicit_bounds=[1],
        bucket_counts=[2, 1],
    )
    text = json_format.MessageToJson(req).encode()
    assert b'"timeUnixNano": "1767000000123456789"' in text  # int64 as a string, camelCase
    assert _samples(text, json=True) == _samples(req.SerializeToString())


@pytest.mark.parametrize("json", [False, True])
def test_bodies_that_are_not_otlp_are_parse_errors(json: bool) -> None:
    for body in (b"\xff\xff\xff", b"{not json", b'{"resourceMetrics": 5}', b"\x0a\x05abc"):
        with pytest.raises(ParseError, match="not"):
            parse_otlp_metrics(body, json=json)


def test_status_encoding_is_a_google_rpc_status() -> None:
    from google.rpc import status_pb2  # the real message, from the exporter's dependencies

    status = status_pb2.Status.FromString(encode_otlp_status(3, "metric 'x': bad ü"))
    assert (status.code, status.message) == (3, "metric 'x': bad ü")


# -- generated requests ----------------------------------------------------------------

names = st.text(alphabet="abcXYZ09._:-/ü{}", min_size=0, max_size=12)
values = st.one_of(
    st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans()
)


@st.composite
def requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rm = req.resource_metrics.add()
        for k, v in draw(st.dictionaries(names, values, max_size=3)).items():
            _set(rm.resource.attributes.add(key=k).value, v)
        scope = rm.scope_metrics.add()
        for _ in range(draw(st.integers(0, 3))):
            m = scope.metrics.add(
                name=draw(names), unit=draw(st.sampled_from(["", "s", "1", "By/s", "{x}"]))
            )
            kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary", "none"]))
            attrs = draw(st.dictionaries(names, values, max_size=3))
            ts = draw(st.integers(0, 2**63 - 1))
            if kind == "gauge":
                _point(m.gauge.data_points, attrs, as_double=draw(st.floats()), time_unix_nano=ts)
            elif kind == "sum":
                m.sum.is_monotonic = draw(st.booleans())
                m.sum.aggregation_temporality = draw(st.sampled_from([0, 1, 2]))
                _point(m.sum.data_points, attrs, as_int=draw(st.integers(-(2**63), 2**63 - 1)))
            elif kind == "histogram":
                m.histogram.aggregation_temporality = draw(st.sampled_from([1, 2]))
                bounds = sorted(draw(st.lists(st.floats(allow_nan=False), max_size=4)))
                counts = draw(st.lists(st.integers(0, 2**32), min_size=0, max_size=6))
                _point(
                    m.histogram.data_points,
                    attrs,
                    explicit_bounds=bounds,
                    bucket_counts=counts,
                    count=sum(counts),
                )
            elif kind == "summary":
                p = _point(m.summary.data_points, attrs, count=3, sum=draw(st.floats()))
                p.quantile_values.add(quantile=draw(st.floats(0, 1)), value=draw(st.floats()))  # type: ignore[attr-defined]
    return req


@settings(max_examples=150, deadline=None)
@given(requests())
def test_any_request_maps_to_valid_series_or_named_errors(req: ExportMetricsServiceRequest) -> None:
    for r in (
        parse_otlp_metrics(req.SerializeToString()),
        parse_otlp_metrics(json_format.MessageToJson(req).encode(), json=True),
    ):
        for labels in r.batch.series:
            validate_label_set(labels)
        assert all(str(e).startswith(("metric '", "target_info")) for e in r.errors)
        assert len(r.batch.timestamps) == len(r.batch.values)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes_parse_or_raise_parse_error(body: bytes, json: bool) -> None:
    try:
        r = parse_otlp_metrics(body, json=json)
    except ParseError:
        return
    for labels in r.batch.series:
        validate_label_set(labels)


def test_json_and_protobuf_agree_on_generated_requests() -> None:
    @settings(max_examples=60, deadline=None)
    @given(requests())
    def check(req: ExportMetricsServiceRequest) -> None:
        a = parse_otlp_metrics(req.SerializeToString())
        b = parse_otlp_metrics(json_format.MessageToJson(req).encode(), json=True)
        assert a.batch.series == b.batch.series
        assert a.batch.timestamps.tolist() == b.batch.timestamps.tolist()
        same = (a.batch.values == b.batch.values) | (
            np.isnan(a.batch.values) & np.isnan(b.batch.values)
        )
        assert same.all()
        assert [str(e) for e in a.errors] == [str(e) for e in b.errors]

    check()
