"""A machine's own series by name (``machine_names``) and its sums following their parts
(``machine_sums``): a node exporter's ``node_*`` series, labelled with the exporter pod's
labels as Kubernetes scrapes are, is the node's."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause.machine import entity_by, machine_of, resource_of, unit_of
from perfintel.analysis.signals import SeriesInput
from perfintel.model import label_set, metric_name
from tests.analysis.rootcause_cases import GRID, STEP, N, T, noise

KW = {"window_ms": 30 * STEP, "baseline_ms": 150 * STEP}
EXPORTER = {
    "node": "w1",
    "pod": "node-exporter-9d9h4",
    "container": "node-exporter",
    "service": "node-exporter",
    "instance": "10.0.47.152:9100",
}
CART = {"node": "w1", "pod": "cart-7f-x2", "container": "cart", "service": "kubelet"}


def _s(name: str, labels: dict[str, str], values: np.ndarray) -> SeriesInput:
    return SeriesInput(label_set({"__name__": name, **labels}), values)


def _first(series: list[SeriesInput], **params: float) -> str:
    causes = rank_root_causes(T, series, GRID, params=RootCauseParams(**params), **KW)  # type: ignore[arg-type]
    return metric_name(causes[0].labels)


def test_a_node_exporters_series_is_its_machines_by_name_only_when_asked() -> None:
    node = label_set({"__name__": "node_memory_MemAvailable_bytes", **EXPORTER})
    pod = label_set({"__name__": "container_memory_working_set_bytes", **CART})
    assert machine_of(node, False) == ("w1", False)
    assert entity_by(node, False) == "pod=node-exporter-9d9h4"
    assert machine_of(node, True) == ("w1", True)
    assert entity_by(node, True) == "node=w1"
    assert machine_of(pod, True) == ("w1", False)  # a pod's series is not the machine's
    assert resource_of(node) == resource_of(pod) == "memory"
    assert unit_of(node) == unit_of(pod) == "bytes"
    assert resource_of(label_set({"__name__": "node_load1"})) == "cpu"
    assert unit_of(label_set({"__name__": "container_cpu_usage_seconds_total"})) == "seconds"


def test_a_nodes_own_trouble_explains_what_runs_on_it() -> None:
    """The node's available memory falls (something outside the pods: no workload's memory
    grew) and a pod on it slows far more sigmas later: by name the node is the machine, and
    the machine's own series explains what runs on it, its sums' rule or not."""
    free = noise(1, 8e9, 2e7)
    free[205:] -= 2e9
    lat = noise(2, 0.1, 0.001)
    lat[207:] += 0.3
    series = [
        _s("node_memory_MemAvailable_bytes", EXPORTER, free),
        _s("http_request_duration_seconds", {**CART, "service": "cart"}, lat),
        _s("container_memory_working_set_bytes", CART, noise(3, 1e9, 5e6)),
    ]
    assert _first(series) == "http_request_duration_seconds"
    assert _first(series, machine_names=1.0) == "node_memory_MemAvailable_bytes"
    assert _first(series, machine_names=1.0, machine_sums=0.8) == "node_memory_MemAvailable_bytes"


def test_a_small_part_does_not_account_for_a_nodes_large_fall() -> None:
    """A pod's memory grew a little first, then the node's available memory fell by ten times
    as many bytes: the pod's part does not account for the node's fall (bytes compared, not
    onsets), and the node is the machine whose trouble slowed the pod."""
    free = noise(1, 8e9, 2e7)
    free[205:] -= 2e9
    mem = noise(3, 1e9, 5e6)
    mem[203:] += 2e8
    lat = noise(2, 0.1, 0.001)
    lat[207:] += 0.3
    series = [
        _s("node_memory_MemAvailable_bytes", EXPORTER, free),
        _s("http_request_duration_seconds", {**CART, "service": "cart"}, lat),
        _s("container_memory_working_set_bytes", CART, mem),
    ]
    assert _first(series, machine_names=1.0, machine_sums=0.8) == "node_memory_MemAvailable_bytes"


def _leak(rate: float, sd: float, slows: bool = True) -> list[SeriesInput]:
    """A pod's memory leaks (``rate`` bytes a step, noise ``sd``) and its node's available
    memory falls by as many bytes; the pod's latency rises later (when it ``slows``)."""
    grow = np.zeros(N)
    grow[196:] = rate * np.arange(1, N - 195)
    mem = noise(1, 1e9, sd) + grow
    free = noise(2, 8e9, 1e6) - grow
    lat = noise(3, 0.1, 0.001)
    lat[214:] += 0.3
    return [
        _s("node_memory_MemAvailable_bytes", EXPORTER, free),
        _s("container_memory_working_set_bytes", CART, mem),
    ] + [_s("http_request_duration_seconds", {"pod": "cart-7f-x2", "service": "cart"}, lat)] * slows


def test_a_nodes_sum_that_began_with_its_pods_part_follows_it() -> None:
    """The node's load rose in the step the pod's CPU did (no common unit to compare them
    by): the pod's CPU is the part, and comes first."""
    load = noise(1, 3.0, 0.05)
    load[205:] += 2.0
    cpu = noise(2, 0.5, 0.01)
    cpu[205:] += 2.0
    series = [_s("node_load1", EXPORTER, load), _s("container_cpu_usage_ratio", CART, cpu)]
    assert _first(series, machine_names=1.0) == "node_load1"
    assert _first(series, machine_names=1.0, machine_sums=1.0) == "container_cpu_usage_ratio"
    assert _first(series, machine_names=1.0, machine_sums=0.8) == "container_cpu_usage_ratio"


def test_a_nodes_sum_dated_earlier_follows_the_part_that_accounts_for_it() -> None:
    """Conservation: the node's memory fell by what the pod's grew, in bytes, though the
    steadier node series passed its onset level steps earlier."""
    series = _leak(1.5e7, 6e7, slows=False)
    assert _first(series, machine_names=1.0) == "node_memory_MemAvailable_bytes"
    assert _first(series, machine_names=1.0, machine_sums=1e9) == "node_memory_MemAvailable_bytes"
    assert (
        _first(series, machine_names=1.0, machine_sums=0.8) == "container_memory_working_set_bytes"
    )
