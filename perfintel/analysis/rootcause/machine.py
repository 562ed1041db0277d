"""A machine's own series by name: a node exporter's ``node_*`` metrics are the node's.

Kubernetes scrapes label a node exporter's series with the exporter pod's labels
(``pod``, ``container``, ``service``) beside ``node``, so by labels alone a
node's available memory is one more pod. With ``machine_names`` a ``node_*``
series that names its host or node is the machine's own (entity ``node=<name>``),
and the ranking's machine-first rule applies to it: a machine's own series
explains what runs on it.

Most of a node's series sum what runs there (memory, CPU, load, network, disk
I/O): a pod's leak shows in its node's available memory too. :func:`sums_followed`
finds the node series whose change is accounted for by the change of the same
resource in a workload on that machine, so that the node does not explain (or
comes after) its own part. Pure: labels and arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from perfintel.model import LabelSet, metric_name

from .pairs import Pairs
from .words import entity_of, host_of

#: a node exporter's metric names
NODE_PREFIX = "node_"
#: the resources a machine's series sums over what runs on it, by name fragments (first match)
RESOURCE_WORDS = (
    ("memory", ("mem", "heap", "rss", "working_set", "swap")),
    ("cpu", ("cpu", "load", "procs_running", "context_switch")),
    ("network", ("network", "net_", "netstat", "tcp", "sockstat", "receive", "transmit")),
    ("disk", ("disk", "filesystem", "io_", "_io", "vmstat_pg", "fs_")),
)


def by_name(labels: LabelSet) -> bool:
    """Whether a series is a machine's own by its name: a ``node_*`` metric naming its host."""
    return metric_name(labels).startswith(NODE_PREFIX) and bool(host_of(labels)[0])


def machine_of(labels: LabelSet, names: bool) -> tuple[str, bool]:
    """:func:`~perfintel.analysis.rootcause.words.host_of`, and with ``names`` a ``node_*``
    series naming its host is the machine's own."""
    if names and by_name(labels):
        return host_of(labels)[0], True
    return host_of(labels)


def entity_by(labels: LabelSet, names: bool) -> str:
    """:func:`~perfintel.analysis.rootcause.words.entity_of`, and with ``names`` a ``node_*``
    series naming its host is the entity ``node=<host>``."""
    if names and by_name(labels):
        return f"node={host_of(labels)[0]}"
    return entity_of(labels)


def unit_of(labels: LabelSet) -> str:
    """A metric's unit by its name's suffix (``bytes``, ``seconds``; ``""``: unknown)."""
    name = metric_name(labels).lower().removesuffix("_total")
    return next((u for u in ("bytes", "seconds") if name.endswith("_" + u)), "")


def resource_of(labels: LabelSet) -> str:
    """``memory``, ``cpu``, ``network``, ``disk`` by name fragments (``""``: none)."""
    name = metric_name(labels).lower()
    return next((r for r, words in RESOURCE_WORDS if any(w in name for w in words)), "")


def sums_followed(
    pairs: Pairs,
    onset: np.ndarray,
    tol: np.ndarray,
    labels: Sequence[LabelSet],
    machine: Sequence[tuple[str, bool]],
    dev: np.ndarray,
    peak_at: np.ndarray,
    share: float,
) -> Pairs:
    """``pairs`` with the machine's sums following their parts. A machine's own ``node_*``
    series (:func:`by_name`) of a resource (:func:`resource_of`) is accounted for by a change
    of the same resource in a workload on that machine when, in one unit (:func:`unit_of`:
    bytes and bytes), the workload's absolute change at the node series' peak is at least
    ``share`` of the node's (conservation: the node's memory fell by what the pod's grew,
    whichever passed its onset level first); with no common unit (a load and a CPU), when
    the workload's change began no later (within both onsets' uncertainty). Such a series
    explains nothing on its machine by hosting it (it no longer hosts, nor comes first as
    the machine's), and the workload's change hosts it and comes first: a pod's leak makes
    the node's available memory fall, not the reverse. Rows of ``onset`` and ``tol``
    (steps), ``labels``, ``machine`` (:func:`machine_of`), ``dev`` (value less the
    baseline's line, per window step) and ``peak_at`` (window index) are the changes."""
    k = onset.size
    res = np.array([resource_of(lb) for lb in labels], dtype=object)
    node = np.array([by_name(lb) for lb in labels], dtype=bool) & (res != "")
    own = np.array([o for _, o in machine], dtype=bool)
    host = np.array([h for h, _ in machine], dtype=object)
    if k < 2 or not node.any():
        return pairs
    part = ~own & (host != "")
    acc = node[:, None] & part[None, :] & (res[:, None] == res[None, :])
    acc &= host[:, None] == host[None, :]
    began = (onset[None, :] - tol[None, :]) <= (onset[:, None] + tol[:, None])
    unit = np.array([unit_of(lb) for lb in labels], dtype=object)
    comparable = (unit[:, None] == unit[None, :]) & (unit[:, None] != "")
    part_of = np.zeros((k, k), dtype=bool)
    n = np.flatnonzero(node)
    mine = np.abs(dev[n, peak_at[n]])  # each node series' change at its peak
    theirs = np.abs(dev[:, peak_at[n]]).T  # [node, j]: j's change at that step
    part_of[n] = (theirs >= share * mine[:, None]) & (mine[:, None] > 0)
    acc &= np.where(comparable, part_of, began)
    accounted = acc.any(axis=1)
    hosts = pairs.hosts.copy()
    hosts[accounted] &= pairs.same_entity[accounted]
    hosts |= acc.T
    first = pairs.first.copy()
    first[acc] = False
    first[acc.T] = True
    return replace(pairs, first=first, hosts=hosts)
