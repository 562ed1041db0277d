"""What real exporters' labels and metric suffixes say about a series' role and entity.

:mod:`~perfintel.analysis.rootcause.roles` reads a role from name fragments, which is how
our generators and most exporters name things. Real instrumentation also says it in two
other ways this module reads:

* **failures counted by a label of the request counter**: ``http_requests_total{code="500"}``
  (Prometheus clients), ``http_server_requests_seconds_count{outcome="SERVER_ERROR"}``
  (Micrometer), ``istio_requests_total{response_code="503"}``,
  ``grpc_server_handled_total{grpc_code="Unavailable"}``, Linkerd's
  ``response_total{classification="failure"}``, OpenTelemetry's ``error_type`` attribute.
  A count of requests whose labels say the server failed them is the errors of that
  workload, not its load; 2xx, 4xx (the caller's mistake) and the client-side gRPC codes
  (``NotFound``, ``InvalidArgument``…) stay what the name says;
* **timers** (a histogram's or a summary's series, by suffix or by their ``le`` or
  ``quantile`` label, of a duration): ``http_server_requests_seconds{quantile="0.99"}`` is
  latency although its name says "requests", and a timer's ``_count`` is how many
  requests it timed (load), although the name says "duration".

And OpenTelemetry resource attributes turned into labels (``k8s_pod_name``,
``service_instance_id``…) name the same entities as the Prometheus labels (``pod``,
``instance``…): :data:`ENTITY_KINDS` lists both under one kind, so a pod's cAdvisor series
(``pod="a"``) and its application's OTel series (``k8s_pod_name="a"``) are one entity.
"""

from __future__ import annotations

import re

#: entity kinds, most specific first, and the labels that name each: the Prometheus label,
#: then OpenTelemetry resource attributes as labels. ``pod`` before ``instance``: in
#: Kubernetes ``instance`` is the scrape target, which for cAdvisor and kube-state-metrics
#: series is the node's kubelet or the exporter, shared by every pod; ``job`` last, a scrape
#: job covers every target it scrapes
ENTITY_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pod", ("pod", "k8s_pod_name")),
    ("instance", ("instance", "service_instance_id")),
    ("container", ("container", "k8s_container_name")),
    ("host", ("host", "host_name")),
    ("node", ("node", "k8s_node_name")),
    ("service", ("service", "service_name")),
    ("job", ("job",)),
)
#: the kinds that name a machine
HOST_KINDS = ("host", "node")

#: labels carrying an HTTP status code (``500``) or class (``5xx``, Envoy's ``5``)
STATUS_LABELS = (
    "code",
    "status",
    "status_code",
    "http_status",
    "http_status_code",
    "http_response_status_code",
    "response_code",
    "envoy_response_code",
    "response_code_class",
    "envoy_response_code_class",
)
#: labels carrying a gRPC status by name (``Unavailable``; some libraries call it ``code``)
GRPC_LABELS = ("grpc_code", "grpc_status", "grpc_status_code", "rpc_grpc_status_code", "code")
#: labels carrying it by number (OpenTelemetry's ``rpc.grpc.status_code``): only these, a
#: bare ``code="4"`` is no gRPC status
GRPC_NUMBER_LABELS = ("grpc_status", "grpc_status_code", "rpc_grpc_status_code")
#: gRPC statuses that say the server failed (the 5xx of gRPC); the others (``NotFound``,
#: ``InvalidArgument``, ``PermissionDenied``, ``Canceled``…) are the caller's
GRPC_SERVER_FAULTS = frozenset(
    (
        "unknown",
        "deadlineexceeded",
        "deadline_exceeded",
        "resourceexhausted",
        "resource_exhausted",
        "unimplemented",
        "internal",
        "unavailable",
        "dataloss",
        "data_loss",
    )
)
#: the same statuses by number (2, 4, 8, 12, 13, 14, 15)
GRPC_SERVER_FAULT_NUMBERS = frozenset(("2", "4", "8", "12", "13", "14", "15"))
#: labels saying how a request ended in words (Micrometer ``outcome``, Linkerd
#: ``classification``, ``result``, ``status``), and the words that say it failed
OUTCOME_LABELS = ("outcome", "classification", "result", "status")
FAILURE_WORDS = frozenset(("server_error", "failure", "failed", "fail", "error"))
#: OpenTelemetry's ``error.type``: present only on what ended in an error
ERROR_LABELS = ("error_type",)

_SERVER_STATUS = re.compile(r"^5(\d\d|xx)?$", re.IGNORECASE)
#: a timer's series: a histogram's or summary's suffix (``_max``: Micrometer's gauge)
TIMER_SUFFIXES = ("_bucket", "_sum", "_count", "_max")
#: a duration's unit at the end of a name
TIME_UNITS = ("_seconds", "_milliseconds", "_microseconds", "_ms")
#: labels only a timer's series carry
TIMER_LABELS = ("le", "quantile")


def failed(labels: dict[str, str]) -> bool:
    """Whether the labels say the counted requests failed on the server's side."""
    for k in STATUS_LABELS:
        if _SERVER_STATUS.match(labels.get(k, "")):
            return True
    for k in GRPC_LABELS:
        if labels.get(k, "").lower() in GRPC_SERVER_FAULTS:
            return True
    for k in GRPC_NUMBER_LABELS:
        if labels.get(k, "") in GRPC_SERVER_FAULT_NUMBERS:
            return True
    for k in OUTCOME_LABELS:
        if labels.get(k, "").lower() in FAILURE_WORDS:
            return True
    return any(labels.get(k) for k in ERROR_LABELS)


def timer_parts(name: str, labels: dict[str, str]) -> tuple[str, str] | None:
    """``(base name, suffix)`` of a timer's series (suffix ``""`` for a quantile or the base
    itself), or None when the series is no timer's. ``name`` is lower case."""
    base, suffix = name, ""
    for s in TIMER_SUFFIXES:
        if name.endswith(s):
            base, suffix = name[: -len(s)], s
            break
    if not base.endswith(TIME_UNITS):
        return None
    if suffix or any(k in labels for k in TIMER_LABELS):
        return base, suffix
    return None


def entity_label(labels: dict[str, str]) -> tuple[str, str] | None:
    """``(kind, value)`` of the first entity kind a label names, or None."""
    for kind, keys in ENTITY_KINDS:
        v = next((labels[k] for k in keys if labels.get(k)), "")
        if v:
            return kind, v
    return None
