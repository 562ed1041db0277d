"""Real exporters' metric names and labels read as the role, occupancy and entity they mean.

Each row is a series as a well-known exporter or instrumentation library writes it (names
and label keys from their documentation), what the root-cause ranking should read from it
and why. Our generators' own names are rows too: the vocabulary must not misread them.
"""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.rootcause import entity_of, host_of, is_occupancy, rank_root_causes, role_of
from perfintel.analysis.rootcause.parts import group_parts
from perfintel.analysis.signals import SeriesInput
from perfintel.model import LabelSet, label_set
from tests.analysis.rootcause_cases import GRID, N, T

POD = {"namespace": "shop", "pod": "api-7d9f-x2", "instance": "10.1.2.3:8080", "job": "api"}
CADVISOR = {"namespace": "shop", "pod": "api-7d9f-x2", "container": "api", "node": "n1"}
NODE = {"instance": "10.0.0.5:9100", "job": "node-exporter"}
OTEL = {"service_name": "checkout", "service_instance_id": "a1b2", "k8s_pod_name": "co-5c-q"}
OTEL_SVC = {"service_name": "checkout", "service_instance_id": "a1b2"}

#: (exporter, metric name, labels, role, occupancy (little_order's reading: descriptors
#: held too), entity kind, why)
TABLE: list[tuple[str, str, dict[str, str], str, bool, str, str]] = [
    # node_exporter
    ("node", "node_cpu_seconds_total", {**NODE, "cpu": "0", "mode": "user"}, "resource", False, "instance", "CPU time"),
    ("node", "node_memory_MemAvailable_bytes", NODE, "resource", False, "instance", "memory left"),
    ("node", "node_load1", NODE, "resource", False, "instance", "run queue"),
    ("node", "node_network_receive_bytes_total", {**NODE, "device": "eth0"}, "resource", False, "instance", "a NIC's bandwidth"),
    ("node", "node_filesystem_avail_bytes", {**NODE, "mountpoint": "/"}, "resource", False, "instance", "disk space left"),
    ("node", "node_disk_io_time_seconds_total", {**NODE, "device": "sda"}, "resource", False, "instance", "disk busy time"),
    # cAdvisor
    ("cadvisor", "container_cpu_usage_seconds_total", CADVISOR, "resource", False, "pod", "CPU time; pod before node"),
    ("cadvisor", "container_memory_working_set_bytes", CADVISOR, "resource", False, "pod", "memory"),
    ("cadvisor", "container_network_transmit_bytes_total", CADVISOR, "resource", False, "pod", "bandwidth"),
    ("cadvisor", "container_fs_reads_bytes_total", CADVISOR, "resource", False, "pod", "disk reads"),
    ("cadvisor", "container_cpu_cfs_throttled_periods_total", CADVISOR, "resource", False, "pod", "CPU throttling"),
    # kube-state-metrics
    ("ksm", "kube_pod_container_status_restarts_total", CADVISOR, "errors", False, "pod", "a crash"),
    # OpenTelemetry semantic conventions, exported to Prometheus
    ("otel", "http_server_request_duration_seconds_bucket", {**OTEL, "le": "0.5", "http_response_status_code": "200"}, "latency", False, "pod", "a duration histogram; k8s_pod_name is a pod"),
    ("otel", "http_server_request_duration_seconds_count", {**OTEL, "http_response_status_code": "200"}, "traffic", False, "pod", "a timer's count is its requests"),
    ("otel", "http_server_request_duration_seconds_count", {**OTEL, "http_response_status_code": "503"}, "errors", False, "pod", "5xx: the server failed them"),
    ("otel", "http_server_request_duration_seconds_count", {**OTEL, "http_response_status_code": "404"}, "traffic", False, "pod", "4xx: the caller's mistake"),
    ("otel", "http_server_request_duration_seconds_count", {**OTEL_SVC, "error_type": "java.net.SocketTimeoutException"}, "errors", False, "instance", "error.type is set only on failures"),
    ("otel", "http_server_request_duration_seconds_sum", OTEL_SVC, "latency", False, "instance", "time spent serving"),
    ("otel", "http_server_active_requests", OTEL_SVC, "traffic", True, "instance", "requests in flight: load, held"),
    ("otel", "db_client_connections_usage", {**OTEL_SVC, "state": "used", "pool_name": "main"}, "resource", True, "instance", "pool connections in use"),
    ("otel", "db_client_connection_count", {**OTEL_SVC, "db_client_connection_state": "used"}, "resource", True, "instance", "pool connections in use"),
    ("otel", "rpc_server_duration_milliseconds_bucket", {**OTEL_SVC, "le": "100", "rpc_grpc_status_code": "0"}, "latency", False, "instance", "RPC duration"),
    ("otel", "rpc_server_duration_milliseconds_count", {**OTEL_SVC, "rpc_grpc_status_code": "14"}, "errors", False, "instance", "UNAVAILABLE"),
    ("otel", "rpc_server_duration_milliseconds_count", {**OTEL_SVC, "rpc_grpc_status_code": "5"}, "traffic", False, "instance", "NOT_FOUND is the caller's"),
    ("otel", "process_cpu_time_seconds_total", {"service_name": "checkout"}, "resource", False, "service", "CPU time"),
    ("otel", "process_open_file_descriptor_count", OTEL_SVC, "resource", True, "instance", "descriptors held"),
    ("otel", "jvm_thread_count", OTEL_SVC, "resource", True, "instance", "threads"),
    ("otel", "system_network_io_bytes_total", {"host_name": "db-1", "direction": "receive"}, "resource", False, "host", "a machine's bandwidth"),
    ("otel", "k8s_node_memory_usage_bytes", {"k8s_node_name": "n1"}, "resource", False, "node", "a node's memory"),
    # Micrometer (Spring Boot)
    ("micrometer", "http_server_requests_seconds_count", {**POD, "status": "200", "outcome": "SUCCESS"}, "traffic", False, "pod", "the timer's count"),
    ("micrometer", "http_server_requests_seconds_count", {**POD, "status": "503", "outcome": "SERVER_ERROR"}, "errors", False, "pod", "5xx"),
    ("micrometer", "http_server_requests_seconds_count", {**POD, "status": "404", "outcome": "CLIENT_ERROR"}, "traffic", False, "pod", "4xx: the caller's"),
    ("micrometer", "http_server_requests_seconds_sum", {**POD, "status": "200"}, "latency", False, "pod", "time spent"),
    ("micrometer", "http_server_requests_seconds_max", {**POD, "status": "200"}, "latency", False, "pod", "slowest request"),
    ("micrometer", "http_server_requests_seconds", {**POD, "quantile": "0.99"}, "latency", False, "pod", "a percentile"),
    ("micrometer", "http_server_requests_seconds", {**POD, "quantile": "0.99", "status": "500", "outcome": "SERVER_ERROR"}, "latency", False, "pod", "how slow failures are is latency"),
    ("micrometer", "http_server_requests_seconds_bucket", {**POD, "le": "0.25"}, "latency", False, "pod", "a bucket"),
    ("micrometer", "hikaricp_connections_active", {**POD, "pool": "HikariPool-1"}, "resource", True, "pod", "pool in use"),
    ("micrometer", "hikaricp_connections_pending", {**POD, "pool": "HikariPool-1"}, "resource", True, "pod", "waiting for the pool"),
    ("micrometer", "tomcat_threads_busy_threads", {**POD, "name": "http-nio-8080"}, "resource", True, "pod", "busy workers"),
    ("micrometer", "jvm_memory_used_bytes", {**POD, "area": "heap", "id": "G1 Eden Space"}, "resource", False, "pod", "memory"),
    ("micrometer", "jvm_gc_pause_seconds_count", {**POD, "action": "end of minor GC"}, "resource", False, "pod", "a GC timer stays memory's work"),
    ("micrometer", "process_files_open_files", POD, "resource", True, "pod", "descriptors held"),
    # Go and Python Prometheus clients
    ("go", "go_goroutines", POD, "resource", True, "pod", "concurrency held"),
    ("go", "go_memstats_alloc_bytes", POD, "resource", False, "pod", "memory"),
    ("go", "go_gc_duration_seconds", {**POD, "quantile": "0.75"}, "resource", False, "pod", "a GC pause is the runtime's, as the JVM's"),
    ("go", "process_open_fds", POD, "resource", True, "pod", "descriptors held"),
    ("go", "process_resident_memory_bytes", POD, "resource", False, "pod", "memory"),
    ("python", "python_gc_collections_total", {**POD, "generation": "0"}, "resource", False, "pod", "GC work"),
    ("python", "http_requests_total", {**POD, "handler": "/api", "status": "5xx"}, "errors", False, "pod", "5xx class"),
    ("python", "http_requests_total", {**POD, "handler": "/api", "status": "2xx"}, "traffic", False, "pod", "2xx class"),
    ("python", "http_requests_total", {**POD, "code": "500", "method": "get"}, "errors", False, "pod", "500"),
    ("python", "http_request_duration_seconds_count", {**POD, "handler": "/api"}, "traffic", False, "pod", "a timer's count"),
    ("python", "http_request_duration_seconds_bucket", {**POD, "le": "0.1"}, "latency", False, "pod", "a bucket"),
    # databases and caches
    ("mysqld", "mysql_global_status_threads_connected", POD, "resource", True, "pod", "connections held"),
    ("postgres", "pg_stat_activity_count", {**POD, "datname": "shop", "state": "active"}, "resource", True, "pod", "server connections held"),
    ("postgres", "pg_stat_database_numbackends", {**POD, "datname": "shop"}, "resource", True, "pod", "server connections held"),
    ("postgres", "pg_stat_database_xact_commit_total", {**POD, "datname": "shop"}, "traffic", False, "pod", "transactions served"),
    ("otel", "postgresql_backends", {"service_name": "postgres", "postgresql_database_name": "shop"}, "resource", True, "service", "server connections held"),
    ("otel", "postgresql_commits_total", {"service_name": "postgres"}, "traffic", False, "service", "transactions served"),
    ("redis", "redis_connected_clients", POD, "resource", True, "pod", "client connections held"),
    ("otel", "redis_clients_connected", {"service_name": "redis"}, "resource", True, "service", "client connections held"),
    ("redis", "redis_commands_processed_total", POD, "traffic", False, "pod", "commands served"),
    ("redis", "redis_memory_used_bytes", POD, "resource", False, "pod", "memory"),
    ("nginx", "nginx_connections_active", POD, "resource", True, "pod", "connections open"),
    ("nginx", "nginx_http_requests_total", POD, "traffic", False, "pod", "requests"),
    ("nginx", "nginx_vts_server_requests_total", {**POD, "code": "5xx", "host": "shop"}, "errors", False, "pod", "5xx class"),
    # Envoy, Istio, Linkerd, gRPC
    ("istio", "istio_requests_total", {**POD, "response_code": "503", "destination_workload": "api"}, "errors", False, "pod", "5xx"),
    ("istio", "istio_requests_total", {**POD, "response_code": "200", "destination_workload": "api"}, "traffic", False, "pod", "2xx"),
    ("istio", "istio_request_duration_milliseconds_bucket", {**POD, "le": "250", "response_code": "503"}, "latency", False, "pod", "a bucket, of failures"),
    ("istio", "istio_request_duration_milliseconds_count", {**POD, "response_code": "503"}, "errors", False, "pod", "the count of failed requests"),
    ("envoy", "envoy_cluster_upstream_rq_total", POD, "traffic", False, "pod", "upstream requests"),
    ("envoy", "envoy_cluster_upstream_rq", {**POD, "envoy_response_code": "503"}, "errors", False, "pod", "5xx"),
    ("envoy", "envoy_cluster_upstream_rq_xx", {**POD, "envoy_response_code_class": "5"}, "errors", False, "pod", "5xx class"),
    ("envoy", "envoy_cluster_upstream_rq_xx", {**POD, "envoy_response_code_class": "2"}, "traffic", False, "pod", "2xx class"),
    ("envoy", "envoy_cluster_upstream_rq_time_bucket", {**POD, "le": "5"}, "latency", False, "pod", "a duration histogram"),
    ("envoy", "envoy_cluster_upstream_rq_time_count", POD, "traffic", False, "pod", "its count"),
    ("envoy", "envoy_cluster_upstream_cx_active", POD, "resource", True, "pod", "connections open"),
    ("envoy", "envoy_cluster_upstream_rq_timeout", POD, "errors", False, "pod", "timeouts"),
    ("linkerd", "request_total", {**POD, "direction": "inbound"}, "traffic", False, "pod", "requests"),
    ("linkerd", "response_total", {**POD, "classification": "failure", "status_code": "503"}, "errors", False, "pod", "failures"),
    ("linkerd", "response_total", {**POD, "classification": "success", "status_code": "200"}, "traffic", False, "pod", "responses"),
    ("linkerd", "response_latency_ms_bucket", {**POD, "le": "100"}, "latency", False, "pod", "a bucket"),
    ("grpc", "grpc_server_handled_total", {**POD, "grpc_code": "OK"}, "traffic", False, "pod", "handled"),
    ("grpc", "grpc_server_handled_total", {**POD, "grpc_code": "Unavailable"}, "errors", False, "pod", "a server fault"),
    ("grpc", "grpc_server_handled_total", {**POD, "grpc_code": "NotFound"}, "traffic", False, "pod", "the caller's"),
    ("grpc", "grpc_server_handling_seconds_bucket", {**POD, "le": "0.1"}, "latency", False, "pod", "handling time"),
    ("grpc", "grpc_server_started_total", POD, "traffic", False, "pod", "started"),
    ("grpc", "grpc_server_handled_total", {**POD, "code": "DeadlineExceeded"}, "errors", False, "pod", "code, as some libraries call it"),
    ("grpc", "grpc_server_handled_total", {**POD, "code": "4"}, "traffic", False, "pod", "a bare number is no gRPC status"),
    ("kafka", "kafka_consumergroup_lag", {"consumergroup": "billing", "topic": "orders", "partition": "0", "instance": "kx:9308"}, "resource", True, "instance", "a backlog"),
    ("haproxy", "haproxy_backend_http_responses_total", {**NODE, "proxy": "api", "code": "5xx"}, "errors", False, "instance", "5xx class"),
    ("haproxy", "haproxy_backend_http_responses_total", {**NODE, "proxy": "api", "code": "2xx"}, "traffic", False, "instance", "2xx class"),
    ("haproxy", "haproxy_backend_current_sessions", {**NODE, "proxy": "api"}, "resource", True, "instance", "sessions open"),
    ("haproxy", "haproxy_backend_response_time_average_seconds", {**NODE, "proxy": "api"}, "latency", False, "instance", "response time"),
    # our generators' names: unchanged readings
    ("generator", "requests_total", {"service": "svc-01", "instance": "svc-01-0:9100"}, "traffic", False, "instance", "requests"),
    ("generator", "errors_total", {"service": "svc-01", "instance": "svc-01-0:9100"}, "errors", False, "instance", "errors"),
    ("generator", "request_latency_seconds", {"service": "svc-01", "instance": "svc-01-0:9100"}, "latency", False, "instance", "a gauge of latency"),
    ("generator", "http_request_duration_seconds", {**POD, "quantile": "0.99"}, "latency", False, "pod", "p99"),
    ("generator", "http_errors_total", POD, "errors", False, "pod", "errors"),
    ("generator", "db_client_connections_in_use", {**POD, "pool": "postgres"}, "resource", True, "pod", "pool"),
]  # fmt: skip


def _labels(name: str, labels: dict[str, str]) -> LabelSet:
    return label_set({**labels, "__name__": name})


@pytest.mark.parametrize(
    ("name", "labels", "role", "occupancy", "kind"),
    [pytest.param(*row[1:6], id=f"{row[0]}:{row[1]}:{row[6]}") for row in TABLE],
)
def test_real_names_read_as_what_they_mean(
    name: str, labels: dict[str, str], role: str, occupancy: bool, kind: str
) -> None:
    ls = _labels(name, labels)
    assert role_of(ls) == role
    assert is_occupancy(ls, held=True) == occupancy
    assert entity_of(ls).split("=", 1)[0] == kind


def test_opentelemetry_labels_name_the_same_entity_and_machine_as_prometheus_ones() -> None:
    prom = _labels("container_cpu_usage_seconds_total", {"pod": "a", "node": "n1"})
    otel = _labels("http_server_active_requests", {"k8s_pod_name": "a", "k8s_node_name": "n1"})
    assert entity_of(prom) == entity_of(otel) == "pod=a"
    assert host_of(prom) == host_of(otel) == ("n1", False)
    assert host_of(_labels("system_memory_usage_bytes", {"host_name": "db-1"})) == ("db-1", True)


def test_failed_and_served_counts_are_two_causes_not_parts_of_one() -> None:
    """A status label splits a count into roles (5xx errors, 2xx load), not into parts of one
    measurement as ``le`` or ``cpu`` do: each is listed as its own cause."""

    class Ranked:
        def __init__(self, labels: LabelSet) -> None:
            self.labels = labels

    name = "http_server_requests_seconds_count"
    failed = Ranked(_labels(name, {**POD, "status": "503", "outcome": "SERVER_ERROR"}))
    served = Ranked(_labels(name, {**POD, "status": "200", "outcome": "SUCCESS"}))
    assert role_of(failed.labels) == "errors" and role_of(served.labels) == "traffic"
    groups = group_parts([failed, served])
    assert [g.first for g in groups] == [failed, served] and groups[0].part_label is None


def _step(level: float, size: float, at: int, sd: float, seed: int, ramp: int = 1) -> np.ndarray:
    rise = np.clip((np.arange(N) - at + 1) / ramp, 0.0, 1.0) * size
    return level + rise + np.random.default_rng(seed).normal(0, sd, N)


def test_a_saturated_pool_read_through_spring_boot_names_ranks_first() -> None:
    """A pod's HikariCP pool saturates at its cap, and in the same minute its p99 and its 503s
    rise (read only through Micrometer's names and labels: a ``_seconds``
    summary, a count with ``status="503"``), while an unrelated pod's traffic dips. Nothing but
    the roles orders them: resources before latency and errors puts the pool first; read as
    names alone (``requests`` in both) the p99 and the 503s are load, which comes first."""
    api = {"namespace": "shop", "pod": "api-1", "instance": "10.0.0.1:8080", "job": "api"}
    web = {"namespace": "shop", "pod": "web-1", "instance": "10.0.0.2:8080", "job": "web"}
    timer = "http_server_requests_seconds"
    ok = {"status": "200", "outcome": "SUCCESS", "uri": "/orders"}
    failed = {"status": "503", "outcome": "SERVER_ERROR", "uri": "/orders"}
    at = 205
    per_step_503 = _step(0.5, 40.0, at, 2.0, 4)
    per_step_web = _step(300.0, -60.0, at + 1, 4.0, 5)
    series = [
        SeriesInput(_labels("hikaricp_connections_active", {**api, "pool": "HikariPool-1"}), np.minimum(_step(4.0, 16.0, at, 0.2, 1), 20.0)),
        SeriesInput(_labels(timer, {**api, **ok, "quantile": "0.99"}), _step(0.12, 0.3, at, 0.01, 2)),
        SeriesInput(_labels(timer + "_count", {**api, **ok}), np.cumsum(_step(300.0, 0.0, at, 4.0, 3)), True),
        SeriesInput(_labels(timer + "_count", {**api, **failed}), np.cumsum(np.maximum(per_step_503, 0.0)), True),
        SeriesInput(_labels(timer + "_count", {**web, **ok}), np.cumsum(per_step_web), True),
    ]  # fmt: skip
    causes = rank_root_causes(T, series, GRID, window_ms=30 * 60_000, baseline_ms=180 * 60_000)
    assert causes and causes[0].index == 0
