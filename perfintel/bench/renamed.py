"""Generated incidents under another real naming convention: same values, same meaning.

The incident generators name their series the way their authors did
(``requests_total``, ``errors_total``, ``http_errors_total``…). Real users point
perfintel at other exporters, where the same facts are spelt differently: errors
are a status label on the request counter, latency is a ``_seconds`` timer,
entities are OpenTelemetry resource attributes. :func:`renamed` maps each series
of an incident to the same meaning in another convention; values, counter flags,
timing, series order and so the ground truth (``root``, ``affected``,
``background`` are indices) are unchanged, so a ranking that reads names right
scores the same under every convention.

Conventions (names and labels as the real exporters write them):

* ``otel`` — OpenTelemetry instrumentation exported to Prometheus: HTTP as the
  ``http.server.request.duration`` histogram (its ``_count`` split by
  ``http_response_status_code``: the requests are the 200s, the errors the 500s;
  its p99 as a ``quantile`` gauge, as a recording rule or a summary shows it),
  ``process.cpu.time``, ``process.open_file_descriptor.count``,
  ``db.client.connection.count{state="used"}``, the collector's kubeletstats
  (``container.cpu.time``), postgresql (``postgresql.backends``,
  ``postgresql.commits``) and redis (``redis.clients.connected``) receivers; the
  entity labels are the resource attributes (``service_name``,
  ``service_instance_id``, ``k8s_pod_name``, ``k8s_node_name``…) in place of
  ``service``, ``instance``, ``pod``, ``node``… Node exporter series keep their
  names (they are commonly scraped beside OpenTelemetry).
* ``micrometer`` — a Spring Boot service (Micrometer's Prometheus registry) in
  Kubernetes: ``http_server_requests_seconds_count`` with ``status`` and
  ``outcome`` (``SUCCESS``/200 for the requests, ``SERVER_ERROR``/500 for the
  errors), its p99 as ``http_server_requests_seconds{quantile="0.99"}``,
  ``process_cpu_seconds_total``, ``process_files_open_files``, HikariCP's
  ``hikaricp_connections_active``; cAdvisor, postgres, redis and node exporter
  series keep their names and every series its labels.

The generators' mean or p99 latency gauge and their error counter map to the
convention's p99 and 5xx count: the values are the generator's own, the names
say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from perfintel.analysis.signals import SeriesInput
from perfintel.bench.incidents import Incident
from perfintel.model import METRIC_NAME, label_set

#: a series' new name and the labels to add to it
Renaming = tuple[str, dict[str, str]]

_HTTP_OK = {"http_request_method": "GET", "http_route": "/api", "http_response_status_code": "200"}
_HTTP_FAILED = {**_HTTP_OK, "http_response_status_code": "500"}
_OTEL_DURATION = "http_server_request_duration_seconds"
OTEL_NAMES: dict[str, Renaming] = {
    # the first generators
    "requests_total": (_OTEL_DURATION + "_count", _HTTP_OK),
    "errors_total": (_OTEL_DURATION + "_count", _HTTP_FAILED),
    "cpu_seconds_total": ("process_cpu_time_seconds_total", {}),
    "request_latency_seconds": (_OTEL_DURATION, {"quantile": "0.99"}),
    # the blind generator
    "http_requests_total": (_OTEL_DURATION + "_count", _HTTP_OK),
    "http_errors_total": (_OTEL_DURATION + "_count", _HTTP_FAILED),
    "http_request_duration_seconds": (_OTEL_DURATION, {}),
    "container_cpu_usage_seconds_total": ("container_cpu_time_seconds_total", {}),
    "process_open_fds": ("process_open_file_descriptor_count", {}),
    "db_client_connections_in_use": (
        "db_client_connection_count",
        {"db_client_connection_state": "used"},
    ),
    "pg_stat_activity_count": ("postgresql_backends", {}),
    "pg_stat_database_xact_commit_total": ("postgresql_commits_total", {}),
    "redis_connected_clients": ("redis_clients_connected", {}),
}
#: Prometheus labels -> OpenTelemetry resource attributes as labels (``pool``, ``datname``,
#: ``state``: the attributes the semantic conventions give them)
OTEL_LABELS = {
    "service": "service_name",
    "instance": "service_instance_id",
    "pod": "k8s_pod_name",
    "container": "k8s_container_name",
    "node": "k8s_node_name",
    "namespace": "k8s_namespace_name",
    "host": "host_name",
    "pool": "db_client_connection_pool_name",
    "datname": "postgresql_database_name",
    "state": "postgresql_backend_state",
}

_MM_OK = {"method": "GET", "uri": "/api", "status": "200", "outcome": "SUCCESS"}
_MM_FAILED = {**_MM_OK, "status": "500", "outcome": "SERVER_ERROR"}
_MM_TIMER = "http_server_requests_seconds"
MICROMETER_NAMES: dict[str, Renaming] = {
    "requests_total": (_MM_TIMER + "_count", _MM_OK),
    "errors_total": (_MM_TIMER + "_count", _MM_FAILED),
    "cpu_seconds_total": ("process_cpu_seconds_total", {}),
    "request_latency_seconds": (_MM_TIMER, {**_MM_OK, "quantile": "0.99"}),
    "http_requests_total": (_MM_TIMER + "_count", _MM_OK),
    "http_errors_total": (_MM_TIMER + "_count", _MM_FAILED),
    "http_request_duration_seconds": (_MM_TIMER, _MM_OK),
    "process_open_fds": ("process_files_open_files", {}),
    "db_client_connections_in_use": ("hikaricp_connections_active", {}),
}

#: convention -> (metric renamings, label renamings)
CONVENTIONS: dict[str, tuple[Mapping[str, Renaming], Mapping[str, str]]] = {
    "otel": (OTEL_NAMES, OTEL_LABELS),
    "micrometer": (MICROMETER_NAMES, {}),
}
#: the label the declared service graph is read by, per convention
GRAPH_LABEL = {"otel": "service_name", "micrometer": "service"}


def rename_labels(
    labels: Mapping[str, str], names: Mapping[str, Renaming], keys: Mapping[str, str]
) -> dict[str, str]:
    """``labels`` in another convention: the metric renamed with its added labels, the other
    labels renamed by ``keys`` (a name not in ``names`` is kept)."""
    name = labels.get(METRIC_NAME, "")
    new_name, extra = names.get(name, (name, {}))
    out = {keys.get(k, k): v for k, v in labels.items() if k != METRIC_NAME}
    return {**out, **extra, METRIC_NAME: new_name}


def renamed(inc: Incident, convention: str) -> Incident:
    """``inc`` with every series named as ``convention`` names it (same values and order)."""
    names, keys = CONVENTIONS[convention]
    series = [
        SeriesInput(label_set(rename_labels(dict(s.labels), names, keys)), s.values, s.counter)
        for s in inc.series
    ]
    if len({s.labels for s in series}) != len(series):
        raise ValueError(f"{convention}: two series of {inc.profile}/{inc.seed} got one name")
    return replace(inc, series=series)


def renaming(convention: str) -> Callable[[Incident], Incident]:
    """The transform of ``convention`` (``""``: the generator's own names)."""
    if not convention:
        return lambda inc: inc
    if convention not in CONVENTIONS:
        raise SystemExit(f"unknown convention {convention!r} (one of {', '.join(CONVENTIONS)})")
    return lambda inc: renamed(inc, convention)
