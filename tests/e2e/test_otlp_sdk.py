"""The real OpenTelemetry SDK and its OTLP/HTTP exporter pushing to a running perfintel, read
back with PromQL; and OTLP JSON as a hand-built request."""

from __future__ import annotations

import gzip
import time

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from tests.conftest import Server


def promql(server: Server, query: str) -> list[dict[str, object]]:
    r = httpx.get(server.url + "/api/v1/query", params={"query": query}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def value(server: Server, query: str) -> float:
    result = promql(server, query)
    assert len(result) == 1, (query, result)
    return float(result[0]["value"][1])  # type: ignore[index]


class RecordingExporter(OTLPMetricExporter):
    """The SDK's exporter, remembering what each export returned."""

    results: list[MetricExportResult]

    def export(self, *args: object, **kwargs: object) -> MetricExportResult:
        result = super().export(*args, **kwargs)  # type: ignore[arg-type]
        self.results.append(result)
        return result


def provider(
    server: Server,
    path: str,
    *,
    compression: Compression = Compression.NoCompression,
    temporality: dict[type, AggregationTemporality] | None = None,
) -> tuple[MeterProvider, RecordingExporter]:
    exporter = RecordingExporter(
        endpoint=server.url + path,
        compression=compression,
        preferred_temporality=temporality or {},
    )
    exporter.results = []
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.namespace": "shop",
            "service.instance.id": "pod-1",
            "deployment.environment": "test",
        }
    )
    return MeterProvider(resource=resource, metric_readers=[reader]), exporter


@pytest.mark.parametrize(
    ("path", "compression"),
    [("/v1/metrics", Compression.NoCompression), ("/api/v1/otlp/v1/metrics", Compression.Gzip)],
)
def test_the_sdk_pushes_protobuf_and_promql_reads_it(
    server: Server, path: str, compression: Compression
) -> None:
    mp, exporter = provider(server, path, compression=compression)
    meter = mp.get_meter("checkout.tests")
    requests = meter.create_counter("http.server.requests", unit="{request}")
    duration = meter.create_histogram("http.server.request.duration", unit="s")
    queue = meter.create_up_down_counter("queue.size", unit="{item}")
    for code, n in (("200", 7), ("500", 2)):
        requests.add(n, {"http.response.status_code": code})
    for seconds in (0.003, 0.02, 0.02, 0.4, 3.0):
        duration.record(seconds, {"http.route": "/pay"})
    queue.add(5)
    queue.add(-2)
    assert mp.force_flush()
    mp.shutdown()
    assert exporter.results and all(r == MetricExportResult.SUCCESS for r in exporter.results)

    sel = 'job="shop/checkout",instance="pod-1"'
    assert value(server, f"sum(http_server_requests_total{{{sel}}})") == 9
    assert (
        value(server, f'http_server_requests_total{{{sel},http_response_status_code="500"}}') == 2
    )
    assert value(server, f"queue_size{{{sel}}}") == 3
    assert value(server, f"http_server_request_duration_seconds_count{{{sel}}}") == 5
    assert value(server, f"http_server_request_duration_seconds_sum{{{sel}}}") == pytest.approx(
        3.443
    )
    assert value(server, f'http_server_request_duration_seconds_bucket{{{sel},le="+Inf"}}') == 5
    # The SDK's default bounds are 0, 5, 10, 25, ...: all five observations fall in (0, 5].
    p50 = value(
        server,
        f"histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{{{sel}}}))",
    )
    assert p50 == pytest.approx(2.5)
    info = promql(server, 'target_info{job="shop/checkout"}')
    assert len(info) == 1
    labels = info[0]["metric"]
    assert labels["deployment_environment"] == "test"  # type: ignore[index]
    assert labels["telemetry_sdk_language"] == "python"  # type: ignore[index]
    assert "service_name" not in labels  # type: ignore[operator]


def test_delta_temporality_is_refused_with_a_clear_400(server: Server) -> None:
    delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    mp, exporter = provider(server, "/v1/metrics", temporality=delta)
    mp.get_meter("t").create_counter("delta.requests").add(1)
    mp.get_meter("t").create_up_down_counter("still.fine").add(4)
    mp.force_flush()
    mp.shutdown()
    # a 400 (logged by the SDK, not retried); the export at shutdown has no delta point left
    assert exporter.results[0] == MetricExportResult.FAILURE
    assert value(server, 'still_fine{job="shop/checkout"}') == 4  # the rest was kept
    assert promql(server, "delta_requests_total") == []

    # The answer itself, as the exporter saw it: a google.rpc.Status naming the metric.
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="delta.requests")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    m.sum.data_points.add(as_int=1, time_unix_nano=time.time_ns())
    r = httpx.post(
        server.url + "/v1/metrics",
        content=req.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/x-protobuf"
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3 and "metric 'delta.requests': delta temporality" in status.message


def test_json_by_hand_with_gzip(server: Server) -> None:
    now = time.time_ns()
    doc = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "cron"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "jobs.processed",
                                "unit": "{job}",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asInt": "12",
                                            "timeUnixNano": str(now),
                                            "attributes": [
                                                {"key": "queue", "value": {"stringValue": "mail"}}
                                            ],
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    body = json_format.MessageToJson(json_format.ParseDict(doc, ExportMetricsServiceRequest()))
    r = httpx.post(
        server.url + "/v1/metrics",
        content=gzip.compress(body.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json" and r.json() == {}
    assert value(server, 'jobs_processed_total{job="cron",queue="mail"}') == 12
    # a malformed JSON body: a 400 in OTLP's JSON Status form
    r = httpx.post(
        server.url + "/v1/metrics",
        content=b'{"resourceMetrics": [',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == 3
    assert "not OTLP JSON" in r.json()["message"]
    r = httpx.post(server.url + "/v1/metrics", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
